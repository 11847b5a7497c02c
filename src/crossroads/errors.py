"""The one error type of the gateway and its OpenRouter envelope.

Every failure a client can see is a `GatewayError`: an HTTP status, a message and
OpenRouter's `metadata`. `envelope()` renders `{"error": {"code", "message", "metadata"}}`.
`error_type` follows OpenRouter's `ApiErrorType` vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_DEFAULT_TYPES = {
    400: "invalid_request",
    401: "authentication",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    408: "timeout",
    413: "payload_too_large",
    422: "unprocessable",
    429: "rate_limit_exceeded",
    502: "provider_unavailable",
    503: "provider_overloaded",
    504: "timeout",
}


class GatewayError(Exception):
    """An error answered to the client with `status` and OpenRouter's error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _DEFAULT_TYPES.get(
            status, "server" if status >= 500 else "unmapped"
        )
        self.metadata = {"error_type": self.error_type, **(metadata or {})}
        self.headers = headers or {}

    def error_object(self) -> dict[str, Any]:
        """The envelope's `error` member: also what a stream's error event and a record carry."""
        return {"code": self.status, "message": self.message, "metadata": self.metadata}

    def envelope(self) -> dict[str, Any]:
        return {"error": self.error_object(), "user_id": None}


@dataclass(frozen=True, slots=True)
class StreamFailure:
    """A stream that failed after its output began: the last item a chat stream yields."""

    error: GatewayError


class ConfigError(Exception):
    """The config file or a setting cannot be used; raised at start, before anything runs."""
