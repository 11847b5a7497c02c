"""An API key as the operator types it and as it is shown.

The options of `crossroads keys create` are checked before anything is written: a bad value
is a usage error (exit 2) naming the option, and no key is created. The guardrails are
built by `limits.guardrails.parse_guardrails`, as the API builds them. A stored key is shown
as `/keys` shows it (`ApiKey.public`), as a table row or a field a line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from crossroads.accounting.keys import MAX_LIMIT
from crossroads.cli.store import dollars
from crossroads.errors import GatewayError
from crossroads.limits.guardrails import parse_guardrails
from crossroads.schema.guardrails import Guardrails
from crossroads.storage.tables import CONTROL_CHARACTERS, api_keys, column_length

F = TypeVar("F", bound=Callable[..., Any])
MAX_INT = 2**31 - 1  # what an Integer column holds on every database
MIN_PREFIX = 8  # hex characters of a hash that name a key
# the option that sets each guardrail, named in the errors `parse_guardrails` raises
_OPTIONS = {
    "allowed_models": "--allow-model",
    "allowed_providers": "--allow-provider",
    "zdr": "--zdr",
    "data_collection": "--deny-data-collection",
    "max_tokens": "--max-tokens",
}


def _text(value: str, *, limit: int, what: str) -> str:
    value = value.strip()
    if not value:
        raise click.BadParameter(f"{what} must not be empty")
    if CONTROL_CHARACTERS.search(value):
        raise click.BadParameter(f"{what} must not contain control characters")
    if len(value) > limit:
        raise click.BadParameter(f"{what} is longer than {limit} characters")
    return value


def key_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    return _text(value, limit=column_length(api_keys.c.name), what="the name")


def hash_prefix(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A key's hash or its first MIN_PREFIX or more characters, in lower case."""
    prefix = value.strip().lower()
    if not MIN_PREFIX <= len(prefix) <= 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise click.BadParameter(
            f"give a key's hash, or its first {MIN_PREFIX} or more hex characters"
        )
    return prefix


def _limit(_ctx: click.Context, _param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_LIMIT):
        raise click.BadParameter(f"{value} is not an amount of USD from 0 to {MAX_LIMIT}")
    return value


def _names(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    """The names as given, none with control characters; `parse_guardrails` checks the
    rest (empty, too long, too many) and keeps each once."""
    for value in values:
        if CONTROL_CHARACTERS.search(value):
            raise click.BadParameter(f"{value!r} must not contain control characters")
    return list(values)


def _expiry(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 time in UTC (`Z` or `+00:00`), in the future."""
    if value is None:
        return None
    try:
        expires = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    offset = expires.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise click.BadParameter(f"{value!r} must be in UTC (end it with Z or +00:00)")
    if expires <= datetime.now(UTC):
        raise click.BadParameter(f"{value!r} is in the past")
    return expires


def create_options(command: F) -> F:
    """The limits and guardrails a new key may be given."""
    count = click.IntRange(1, MAX_INT)
    options = (
        click.option(
            "--limit",
            type=float,
            callback=_limit,
            help=f"Spend limit in USD (at most {MAX_LIMIT}).",
        ),
        click.option(
            "--limit-reset",
            type=click.Choice(["daily", "weekly", "monthly"]),
            help="When the limit starts over (UTC); never without this.",
        ),
        click.option("--rpm", type=count, help="Requests per minute at most."),
        click.option("--tpm", type=count, help="Tokens per minute at most."),
        click.option(
            "--allow-model",
            multiple=True,
            callback=_names,
            metavar="ID",
            help="Only these models (repeat; `a/b` allows every variant, `a/b:free` only it).",
        ),
        click.option(
            "--allow-provider",
            multiple=True,
            callback=_names,
            metavar="SLUG",
            help="Only these providers (repeat).",
        ),
        click.option("--zdr", is_flag=True, help="Only zero-data-retention endpoints."),
        click.option(
            "--deny-data-collection",
            is_flag=True,
            help="Only endpoints that do not collect prompts.",
        ),
        click.option("--max-tokens", type=count, help="Cap on a request's max_tokens."),
        click.option("--expires", callback=_expiry, metavar="ISO-UTC", help="Expiry time, UTC."),
    )
    for option in reversed(options):
        command = option(command)
    return command


def key_fields(options: dict[str, Any]) -> dict[str, Any]:
    """`KeyRing.create`'s fields from the checked options of `create_options`."""
    rails: dict[str, Any] = {}
    if options["allow_model"]:
        rails["allowed_models"] = options["allow_model"]
    if options["allow_provider"]:
        rails["allowed_providers"] = options["allow_provider"]
    if options["zdr"]:
        rails["zdr"] = True
    if options["deny_data_collection"]:
        rails["data_collection"] = "deny"
    if options["max_tokens"] is not None:
        rails["max_tokens"] = options["max_tokens"]
    return {
        "limit": options["limit"],
        "limit_reset": options["limit_reset"],
        "requests_per_minute": options["rpm"],
        "tokens_per_minute": options["tpm"],
        "guardrails": _guardrails(rails),
        "expires_at": options["expires"],
    }


def _guardrails(rails: dict[str, Any]) -> Guardrails | None:
    """`parse_guardrails` of the options' rules; its error names the option at fault."""
    try:
        return parse_guardrails(rails)
    except GatewayError as error:
        field = error.message.removeprefix("guardrails.").split(" ", 1)[0]
        option = _OPTIONS.get(field.split("[", 1)[0])
        ctx = click.get_current_context(silent=True)
        if option is None:
            raise click.UsageError(error.message, ctx) from None
        raise click.BadParameter(error.message, ctx, param_hint=f"'{option}'") from None


def _guardrails_summary(data: dict[str, Any]) -> str:
    rails = data.get("guardrails") or {}
    parts = []
    if rails.get("allowed_models"):
        parts.append("models=" + ",".join(rails["allowed_models"]))
    if rails.get("allowed_providers"):
        parts.append("providers=" + ",".join(rails["allowed_providers"]))
    if rails.get("zdr"):
        parts.append("zdr")
    if rails.get("data_collection"):
        parts.append(f"data_collection={rails['data_collection']}")
    if rails.get("max_tokens") is not None:
        parts.append(f"max_tokens={rails['max_tokens']}")
    return " ".join(parts) or "-"


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def row(data: dict[str, Any]) -> list[str]:
    return [
        data["hash"][:12],
        data["name"],
        data["label"],
        "yes" if data["disabled"] else "no",
        dollars(data["limit"]),
        dollars(data["limit_remaining"]),
        data["limit_reset"] or "-",
        dollars(data["usage"]),
        _number(data["requests_per_minute"]),
        _number(data["tokens_per_minute"]),
        _guardrails_summary(data),
    ]


HEADERS = (
    "HASH",
    "NAME",
    "LABEL",
    "DISABLED",
    "LIMIT",
    "REMAINING",
    "RESET",
    "USAGE",
    "RPM",
    "TPM",
    "GUARDRAILS",
)


def describe(data: dict[str, Any]) -> str:
    """One key, a field a line."""
    lines = [
        ("hash", data["hash"]),
        ("name", data["name"]),
        ("label", data["label"]),
        ("disabled", "yes" if data["disabled"] else "no"),
        ("limit", dollars(data["limit"])),
        ("limit remaining", dollars(data["limit_remaining"])),
        ("limit reset", data["limit_reset"] or "-"),
        ("usage", dollars(data["usage"])),
        ("usage today", dollars(data["usage_daily"])),
        ("usage this week", dollars(data["usage_weekly"])),
        ("usage this month", dollars(data["usage_monthly"])),
        ("requests per minute", _number(data["requests_per_minute"])),
        ("tokens per minute", _number(data["tokens_per_minute"])),
        ("guardrails", _guardrails_summary(data)),
        ("created at", data["created_at"]),
        ("updated at", data["updated_at"] or "-"),
        ("expires at", data["expires_at"] or "-"),
    ]
    return "\n".join(f"{name + ':':21}{value}" for name, value in lines)
