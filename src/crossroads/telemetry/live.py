"""Where the router's attempt samples go: live statistics and circuits, in one sink.

The router records every attempt into one `StatsSink` (`routing.run`); `Telemetry` is the
gateway's: it feeds the live statistics (unless statistics are switched off with
`settings.telemetry`, to measure what they cost) and always the circuits, which routing
cannot do without.
"""

from __future__ import annotations

from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.sample import AttemptSample
from crossroads.telemetry.stats import LiveStats


class Telemetry:
    """Fans each attempt sample out to `stats` (when `feed_stats`) and to `circuits`."""

    __slots__ = ("circuits", "feed_stats", "stats")

    def __init__(self, stats: LiveStats, circuits: Circuits, *, feed_stats: bool = True) -> None:
        self.stats = stats
        self.circuits = circuits
        self.feed_stats = feed_stats

    def observe(self, sample: AttemptSample) -> None:
        if self.feed_stats:
            self.stats.observe(sample)
        self.circuits.observe(sample)
