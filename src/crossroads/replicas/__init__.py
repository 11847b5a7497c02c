"""Replicas of one gateway sharing live statistics and circuits through Redis (`--redis URL`).

`sync.py` holds `ReplicaSync`, the background task that publishes this replica's buckets and
circuit transitions and applies its peers'; `messages.py` the key names and the encoding of
what travels. This package may import `telemetry` and `schema`, never routing, api or storage.
"""

from crossroads.replicas.messages import Keys, Message
from crossroads.replicas.sync import ReplicaSync, SyncStatus

__all__ = ["Keys", "Message", "ReplicaSync", "SyncStatus"]
