"""Who asks and when: the context the API layer hands the router, and a shared clock helper."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestContext:
    """Who asks, from where; set by the API layer before routing."""

    generation_id: str
    api_key_hash: str | None
    http_referer: str | None = None
    app_title: str | None = None
    user_agent: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    started: float = field(default_factory=time.perf_counter)


def elapsed_ms(since: float) -> float:
    """Milliseconds since `since` (a `time.perf_counter()` reading), to the microsecond."""
    return round((time.perf_counter() - since) * 1000, 3)
