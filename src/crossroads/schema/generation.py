"""The record kept of every generation, and its public `/generation` shape.

Plain data: the router writes it, telemetry queues it, storage persists it; it depends on
none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(slots=True)
class Attempt:
    """One try at one endpoint; a generation with fallbacks has several."""

    provider_slug: str
    provider_name: str
    endpoint_tag: str
    model: str
    status: int | None
    latency_ms: float
    error: str | None = None


@dataclass(slots=True)
class GenerationRecord:
    id: str
    created_at: datetime
    model: str
    api_type: str = "completions"
    api_key_hash: str | None = None
    provider_slug: str | None = None
    provider_name: str | None = None
    endpoint_tag: str | None = None
    upstream_id: str | None = None
    streamed: bool = False
    cancelled: bool = False
    latency_ms: float | None = None
    generation_time_ms: float | None = None
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    tokens_prompt: int | None = None
    tokens_completion: int | None = None
    tokens_reasoning: int | None = None
    tokens_cached: int | None = None
    total_cost: float = 0.0
    http_referer: str | None = None
    app_title: str | None = None
    user_agent: str | None = None
    external_user: str | None = None
    session_id: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    # the `apps` row of the normalized `http_referer`: set by storage when it is written
    app_id: int | None = None
    # whether the cost was charged against the account's credits (the ledger gets a charge)
    balance_charged: bool = False
    moderation_latency_ms: float | None = None  # the moderation plugin's check, when asked
    request_metadata: dict[str, str] | None = None  # the request's `metadata`, as sent
    trace: dict[str, Any] | None = None  # the request's `trace`, as sent

    def to_row(self) -> dict[str, Any]:
        """Every field by name; shallow: the writer only reads."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> GenerationRecord:
        """A record from `to_row()`'s shape, also as read back from JSON (`created_at` as
        ISO 8601 text), possibly written by another version: unknown keys are ignored and
        missing optional fields keep their defaults. A missing `id`, `created_at` or `model`
        raises TypeError; a time that is not ISO 8601 raises ValueError."""
        values = {name: value for name, value in row.items() if name in _FIELDS}
        created = values.get("created_at")
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        if not isinstance(created, datetime):
            raise TypeError(f"created_at is not a time: {created!r}")
        values["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """OpenRouter's `GenerationResponse.data`: every required field, null where unknown."""
        return {
            "id": self.id,
            "upstream_id": self.upstream_id,
            "total_cost": self.total_cost,
            "usage": self.total_cost,
            "cache_discount": None,
            "upstream_inference_cost": None,
            "created_at": self.created_at.isoformat(),
            "model": self.model,
            "app_id": self.app_id,
            "streamed": self.streamed,
            "cancelled": self.cancelled,
            "provider_name": self.provider_name,
            "latency": self.latency_ms,
            "moderation_latency": self.moderation_latency_ms,
            "generation_time": self.generation_time_ms,
            "finish_reason": self.finish_reason,
            "native_finish_reason": self.native_finish_reason,
            "service_tier": None,
            "tokens_prompt": self.tokens_prompt,
            "tokens_completion": self.tokens_completion,
            "native_tokens_prompt": self.tokens_prompt,
            "native_tokens_completion": self.tokens_completion,
            "native_tokens_completion_images": None,
            "native_tokens_reasoning": self.tokens_reasoning,
            "native_tokens_cached": self.tokens_cached,
            "num_media_prompt": None,
            "num_input_audio_prompt": None,
            "num_media_completion": None,
            "num_search_results": None,
            "num_fetches": None,
            "web_search_engine": None,
            "origin": self.http_referer or "",
            "is_byok": False,
            "external_user": self.external_user,
            "api_type": self.api_type,
            "preset_id": None,
            "router": None,
            "provider_responses": [
                {
                    "provider_name": a["provider_name"],
                    "endpoint_id": f"{a['model']}@{a['endpoint_tag']}",
                    "model_permaslug": a["model"],
                    "status": a["status"],
                    "latency": a["latency_ms"],
                    "is_byok": False,
                }
                for a in self.attempts
            ],
            "user_agent": self.user_agent,
            "http_referer": self.http_referer,
            "data_region": "global",
            "workspace_id": None,
            "session_id": self.session_id,
            "metadata": self.request_metadata,
            "trace": self.trace,
            "app_title": self.app_title,
            "attempts": self.attempts,
            "error": self.error,
        }


_FIELDS = frozenset(f.name for f in fields(GenerationRecord))  # what `from_row` keeps


class RecordSink(Protocol):
    """Takes each request's one generation record (the recorder, metrics, the access log)."""

    def submit(self, record: GenerationRecord) -> None: ...
