"""A live-statistics bucket as it is stored and shared: the value telemetry, storage and
the replicas exchange."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One bucket as stored (`endpoint_buckets`) and shared between replicas."""

    instance: str  # the replica that counted it (settings.instance)
    endpoint_id: str
    grain: str  # "minute" | "hour" | "day"
    start: int  # epoch seconds at the bucket's start (a multiple of 60 / 3600 / 86400, UTC)
    data: bytes  # telemetry.buckets.Bucket.to_json()
