"""One attempt's outcome, as live statistics, circuits and metrics count it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"
    FAILED = "failed"  # the provider's fault: counts against uptime and toward its circuit
    RATE_LIMITED = "rate_limited"  # 429: cools the circuit for Retry-After; uptime ignores it
    REFUSED = "refused"  # the caller's own request was refused (400, 413, 422): counted nowhere


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptSample:
    """What one attempt at one endpoint (model x provider) showed."""

    endpoint_id: str
    provider: str  # provider slug
    model: str  # model id
    verdict: Verdict
    latency_ms: float | None = None  # time to first token; to the whole answer when not streamed
    throughput: float | None = None  # output tokens per second after the first token
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_cost: float = 0.0  # USD billed for the prompt
    completion_cost: float = 0.0  # USD billed for the completion
    retry_after: float | None = None  # seconds, from a 429's Retry-After
