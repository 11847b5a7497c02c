"""The one error type of the gateway and its OpenRouter envelope.

Every failure a client can see is a `GatewayError`: an HTTP status, a message and
OpenRouter's `metadata`. `envelope()` renders `{"error": {"code", "message", "metadata"}}`.
`error_type` follows OpenRouter's `ApiErrorType` vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
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


REDACTED = "[REDACTED]"
_VALUE = r"(?:(?:bearer|basic|token)\s+)?[^\s\"'\\,;&{}\[\]]{4,}"  # an optional scheme, a value
# Credentials as they show up in error text. Providers echo them back.
_CREDENTIALS = (
    # a field or header named like a credential, in any notation: `x-api-key: v`,
    # `"api_key": "v"`, `Authorization: Bearer v`, `{\"password\": \"v\"}`
    re.compile(
        r"(?i)\b((?:x-)?(?:goog-)?api[-_]?(?:key|secret)|authorization|(?:access|refresh|id)"
        r"[-_]token|client[-_]secret|secret[-_]key|password)(\\?[\"']?\s*[:=]\s*\\?[\"']?)" + _VALUE
    ),
    # a URL or form parameter: `?key=v`, `&token=v`
    re.compile(r"(?i)([?&;](?:key|token|secret|sig|signature))(=)[^\s&#\"']{4,}"),
    # an `Authorization` value on its own
    re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=\-]{6,}"),
)
# Tokens shaped like API keys, wherever they are: `sk-...`, `gsk_...`, Google's `AIza...`
_KEYLIKE = re.compile(
    r"\b(?:sk|pk|rk|gsk|xai|pplx|hf|r8|nvapi|fw)[-_][A-Za-z0-9_\-]{8,}|\bAIza[0-9A-Za-z_\-]{20,}"
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without credentials: the given `secrets` verbatim (e.g. a provider's own key),
    values of credential-named fields and parameters, `Bearer` values, key-like tokens."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    for pattern in _CREDENTIALS:
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _KEYLIKE.sub(REDACTED, text)


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
