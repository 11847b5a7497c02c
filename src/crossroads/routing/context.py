"""Who asks and when: the context the API layer hands the router, and a shared clock helper."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from crossroads.schema.limits import Ticket


@dataclass(slots=True)
class RequestContext:
    """Who asks, from where; set by the API layer before routing.

    The router also writes into it what observability reads back: the planned endpoint ids
    (`route`) and the time spent awaiting providers (`upstream_ms`, accumulated by
    `routing.attempt` over every attempt), which the overhead header leaves out."""

    generation_id: str
    api_key_hash: str | None
    http_referer: str | None = None
    app_title: str | None = None
    user_agent: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)
    route: list[str] = field(default_factory=list)  # the plan's endpoint ids, in order
    upstream_ms: float = 0.0  # finished waits on providers (open, body, stream reads), in ms
    upstream_since: float = 0.0  # perf_counter() when the wait in progress began; 0: none
    ticket: Ticket | None = None  # what admission held for this request (see `limits`)

    def upstream_so_far_ms(self, now: float) -> float:
        """Milliseconds spent awaiting providers up to `now` (a perf_counter reading), the
        wait in progress included (a stream may start its response while one is pending)."""
        if self.upstream_since:
            return self.upstream_ms + (now - self.upstream_since) * 1000
        return self.upstream_ms


def elapsed_ms(since: float) -> float:
    """Milliseconds since `since` (a `time.perf_counter()` reading), to the microsecond."""
    return round((time.perf_counter() - since) * 1000, 3)
