"""Who asks and when: the context the API layer hands the router, and a shared clock helper."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from crossroads.schema.limits import Ticket


@dataclass(slots=True)
class ProviderTime:
    """The time one request spends awaiting providers: `with waits:` around each wait
    (opening a request, reading a body, each read of a stream). The overhead header and
    metric leave it out of the gateway's own time."""

    total_ms: float = 0.0  # finished waits, in ms
    since: float = 0.0  # perf_counter() when the wait in progress began; 0: none

    def __enter__(self) -> None:
        self.since = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        if self.since:
            self.total_ms += (time.perf_counter() - self.since) * 1000
            self.since = 0.0

    def so_far_ms(self, now: float) -> float:
        """Milliseconds spent awaiting providers up to `now` (a perf_counter reading), the
        wait in progress included (a stream may start its response while one is pending)."""
        if self.since:
            return self.total_ms + (now - self.since) * 1000
        return self.total_ms


@dataclass(slots=True)
class RequestContext:
    """Who asks, from where; set by the API layer before routing. The router notes in it
    the planned endpoint ids (`route`, for tracing) and the time spent awaiting providers
    (`waits`), which observability reads."""

    generation_id: str
    api_key_hash: str | None
    http_referer: str | None = None
    app_title: str | None = None
    user_agent: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)
    route: list[str] = field(default_factory=list)  # the plan's endpoint ids, in order
    waits: ProviderTime = field(default_factory=ProviderTime)
    ticket: Ticket | None = None  # what admission held for this request (see `limits`)
    moderation_ms: float | None = None  # how long the moderation plugin's check took


def elapsed_ms(since: float) -> float:
    """Milliseconds since `since` (a `time.perf_counter()` reading), to the microsecond."""
    return round((time.perf_counter() - since) * 1000, 3)
