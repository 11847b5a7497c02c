"""A key's guardrails as stored and shown: which models and providers it may use, the data
policy forced onto its requests, and a cap on `max_tokens`.

Plain data: keys store it, the API shows it, `limits.guardrails` enforces it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

log = logging.getLogger("crossroads.limits")

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Names = Annotated[list[Name], Meta(min_length=1, max_length=100)]


class Guardrails(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    allowed_models: Names | None = None  # "a/b" allows every variant of a/b; "a/b:free" only it
    allowed_providers: Names | None = None  # provider slugs
    zdr: bool = False  # forced `provider.zdr: true`
    data_collection: Literal["allow", "deny"] | None = None  # "deny" is forced onto requests
    max_tokens: Annotated[int, Meta(ge=1)] | None = None  # cap on max_tokens

    def public(self) -> dict[str, Any]:
        """Every rule, null where unset (`GET /key`, `/keys`)."""
        return {
            "allowed_models": self.allowed_models,
            "allowed_providers": self.allowed_providers,
            "zdr": self.zdr,
            "data_collection": self.data_collection,
            "max_tokens": self.max_tokens,
        }


DENY_ALL = Guardrails(allowed_models=["-"])  # matches no model id: every request is refused


def stored_guardrails(value: Any) -> Guardrails | None:
    """A key's stored guardrails. A stored value that cannot be read (written by another
    version, or by hand) refuses every request rather than letting the key run unguarded."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, Guardrails)
    except msgspec.ValidationError as exc:
        log.error("a key's stored guardrails cannot be read (%s): the key refuses requests", exc)
        return DENY_ALL
