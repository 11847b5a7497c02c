"""The contract between the router and a wire protocol's adapter.

An adapter is a set of pure functions: it turns the OpenRouter-shaped request into an
`UpstreamRequest` and the provider's replies back into OpenAI-shaped dicts. It never
does I/O; `providers.http` sends what it builds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from crossroads.errors import GatewayError, redact
from crossroads.providers.untrusted import safe_raw
from crossroads.schema.catalog import Endpoint, Provider

FINISH_REASONS = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "refusal": "content_filter",
    "error": "error",
}


def normalise_finish_reason(native: Any) -> str | None:
    """OpenRouter's finish_reason vocabulary: stop, length, tool_calls, content_filter, error.

    `native` comes from the provider: anything but a string or null is a `TypeError`."""
    if native is None:
        return None
    if not isinstance(native, str):
        raise TypeError("finish reason is not a string")
    if not native.strip():  # blank: no finish reason (zero-completion insurance reads that)
        return None
    return FINISH_REASONS.get(native.lower(), "stop")


@dataclass(slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool


@dataclass(slots=True)
class Completion:
    """A provider's non-streaming answer, already OpenAI-shaped."""

    upstream_id: str | None
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None
    system_fingerprint: str | None = None
    service_tier: str | None = None


# Statuses after which another endpoint may succeed: the provider, not the request, failed.
_FALLBACK_STATUSES = frozenset({401, 402, 403, 404, 408, 409, 425, 429})


@dataclass(slots=True)
class UpstreamError(Exception):
    """One failed attempt at one endpoint.

    `message` and `raw` come (partly) from the provider: both are cleaned when the error is
    made, so no credential reaches a client or a record (see `errors.redact`)."""

    provider: Provider
    kind: str  # "http", "timeout", "connection", "invalid_response", "incomplete"
    message: str
    status: int | None = None
    raw: Any = None
    retry_after: float | None = None

    def __post_init__(self) -> None:
        secrets = (self.provider.api_key,)
        self.message = redact(self.message, secrets)[:1000]
        self.raw = safe_raw(self.raw, secrets)

    @property
    def fallback_allowed(self) -> bool:
        if self.kind != "http":
            return True
        return self.status is not None and (self.status >= 500 or self.status in _FALLBACK_STATUSES)

    @property
    def client_status(self) -> int:
        """The status the client sees when this is the error that ends the request."""
        if self.kind == "timeout":
            return 408
        if self.kind in ("connection", "invalid_response") or self.status is None:
            return 502
        return self.status if 400 <= self.status < 600 else 502

    def summary(self) -> dict[str, Any]:
        return {
            "provider": self.provider.slug,
            "code": self.client_status,
            "status": self.status,
            "kind": self.kind,
        }

    def to_gateway_error(
        self, previous: Iterable[UpstreamError] = (), *, midstream: bool = False
    ) -> GatewayError:
        """The client's error; `midstream`: output had begun, so the answer is partial."""
        status = self.client_status
        message = self.message if status < 500 else f"Provider returned error: {self.message}"
        if midstream:
            message = (
                f"{self.message}. The answer stopped partway and was not charged; "
                "retry the request to get a complete one"
            )
        metadata: dict[str, Any] = {"provider_name": self.provider.name, "raw": self.raw}
        if self.status is not None:
            metadata["provider_code"] = str(self.status)
        earlier = [e.summary() for e in previous]
        if earlier:
            metadata["previous_errors"] = earlier
        headers = {"Retry-After": str(math.ceil(self.retry_after))} if self.retry_after else None
        return GatewayError(status, message, metadata=metadata, headers=headers)


class StreamDecoder(Protocol):
    """Decodes one stream; `ended` turns true once the protocol's end was seen (OpenAI:
    `[DONE]` or a finish reason, Anthropic: `message_stop`, Gemini: a finish reason).
    A stream whose body ends before that was cut short."""

    ended: bool

    def feed(self, data: str) -> list[dict[str, Any]]:
        """OpenAI-shaped chunks for one SSE `data` payload (empty when it carries none)."""


class Adapter(Protocol):
    """A wire protocol: how to ask a provider for a chat completion and read its answer."""

    api: str

    def build_chat_request(
        self, body: dict[str, Any], endpoint: Endpoint, provider: Provider, *, stream: bool
    ) -> UpstreamRequest: ...

    def parse_chat_response(self, payload: Any) -> Completion: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def error_message(self, payload: Any) -> str: ...
