"""A key's guardrails at work: read from an API body, forced onto a chat request, named in
the errors they cause. Pure functions, no I/O.

The rules (`schema.guardrails.Guardrails`): which models (`allowed_models`) and providers
(`allowed_providers`) a key may use, the data policy forced onto its requests (`zdr`,
`data_collection`), and a cap on `max_tokens`. A request a rule refuses gets a 403 naming
the rule, with `metadata.guardrail` set to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from crossroads.errors import GatewayError
from crossroads.schema.guardrails import Guardrails

MAX_ENTRIES = 100  # names in one list
MAX_NAME_LENGTH = 200  # characters in one name
_SHOWN = 10  # names listed in an error message
_LISTS = ("allowed_models", "allowed_providers")
# the candidate filter (`routing.candidates`) each forced preference shows up as, in the
# `excluded_by` of a plan's error
_FILTERS = {
    "allowed_providers": "allowed_providers",
    "data_policy:zdr": "zdr",
    "data_policy:training": "data_collection",
    "provider": "allowed_providers",  # the plan's own "nothing left to try" (`only`, `order`)
}
_LOCATION = re.compile(r"^(.*) - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`$")


def _invalid(field: str, problem: str) -> GatewayError:
    return GatewayError(400, f"guardrails.{field} {problem}" if field else f"guardrails {problem}")


def _names(field: str, value: object) -> list[str] | None:
    """A list of names, each stripped, checked and kept once (the first spelling)."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid(field, "must be a list of names (or null)")
    if not value:
        raise _invalid(field, "must name at least one entry (null: no restriction)")
    if len(value) > MAX_ENTRIES:
        raise _invalid(field, f"may name at most {MAX_ENTRIES} entries; it has {len(value)}")
    names: dict[str, str] = {}
    for i, entry in enumerate(value):
        if not isinstance(entry, str):
            raise _invalid(f"{field}[{i}]", f"must be a string, not {type(entry).__name__}")
        name = entry.strip()
        if not name:
            raise _invalid(f"{field}[{i}]", "is empty")
        if len(name) > MAX_NAME_LENGTH:
            raise _invalid(f"{field}[{i}]", f"is longer than {MAX_NAME_LENGTH} characters")
        names.setdefault(name.lower(), name)
    return list(names.values())


def parse_guardrails(value: object) -> Guardrails | None:
    """Guardrails from an API body or a stored JSON object; None for null or an object that
    sets no rule. Names are stripped and each kept once. Anything else is refused with a
    400 naming the field (`guardrails.max_tokens`, `guardrails.allowed_models[2]`)."""
    if value is None:
        return None
    if isinstance(value, Guardrails):
        value = msgspec.to_builtins(value)
    if not isinstance(value, dict):
        raise _invalid("", "must be an object (or null)")
    fields = dict(value)
    for field in _LISTS:
        if field in fields:
            fields[field] = _names(field, fields[field])
    try:
        rails = msgspec.convert(fields, Guardrails)
    except msgspec.ValidationError as exc:
        raise _rewritten(str(exc)) from None
    return None if rails == Guardrails() else rails


def _rewritten(message: str) -> GatewayError:
    """msgspec's validation message, naming the field as `guardrails.<field>`."""
    if unknown := _UNKNOWN.match(message):
        known = ", ".join(Guardrails.__struct_fields__)
        return _invalid(unknown.group(1), f"is not a guardrail (known: {known})")
    if located := _LOCATION.match(message):
        problem, field = located.groups()
        return _invalid(field, f"is invalid: {problem[:1].lower()}{problem[1:]}")
    return _invalid("", f"are invalid: {message}")


def _listing(names: Iterable[str]) -> str:
    shown = list(names)
    more = len(shown) - _SHOWN
    text = ", ".join(shown[:_SHOWN])
    return f"{text} and {more} more" if more > 0 else text


def _refused(rule: str, message: str, **metadata: Any) -> GatewayError:
    return GatewayError(
        403, f"Guardrail '{rule}': {message}", metadata={"guardrail": rule, **metadata}
    )


def _model_allowed(name: str, allowed: set[str], resolve: Callable[[str], str | None]) -> bool:
    """`name` or the id it resolves to is allowed as such or, with its `:variant` suffix
    dropped, by its base id ("a/b" allows "a/b:free"; "a/b:free" allows only itself)."""
    canonical = resolve(name)
    for candidate in (name, canonical) if canonical else (name,):
        lowered = candidate.strip().lower()
        base, colon, _ = lowered.rpartition(":")
        if lowered in allowed or (colon and base in allowed):
            return True
    return False


def _requested_models(body: dict[str, Any]) -> list[str]:
    names = [body.get("model"), *(body.get("models") or [])]
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and n]


def _provider_intersection(requested: list[str], allowed: list[str]) -> list[str]:
    """The providers in both lists. A slug covers its tags ("alpha" covers "alpha/fast"), so
    the narrower name is kept; names are compared without regard to case."""
    both: dict[str, str] = {}
    for wanted in requested:
        w = wanted.strip().lower()
        for name in allowed:
            a = name.lower()
            if w == a or w.startswith(a + "/"):
                both.setdefault(w, wanted.strip())
            elif a.startswith(w + "/"):
                both.setdefault(a, name)
    return list(both.values())


def guard_body(
    rails: Guardrails, body: dict[str, Any], *, resolve: Callable[[str], str | None]
) -> dict[str, Any]:
    """A new chat body (`body` is left as it is) with the key's policy forced onto it, or a
    403 naming the rule the request breaks.

    `body` is a chat request already validated by `parse_chat_request`; `resolve` gives the
    catalog id a model name stands for (None when none does)."""
    if rails.allowed_models is not None:
        allowed = {m.lower() for m in rails.allowed_models}
        for name in _requested_models(body):
            if not _model_allowed(name, allowed, resolve):
                raise _refused(
                    "allowed_models",
                    f"this key may not use {name} (allowed: {_listing(rails.allowed_models)})",
                    model=name,
                )
    guarded = dict(body)
    prefs = dict(body.get("provider") or {})
    forced = False
    if rails.allowed_providers is not None:
        requested = [p for p in prefs.get("only") or [] if isinstance(p, str)]
        only = (
            _provider_intersection(requested, rails.allowed_providers)
            if requested
            else list(rails.allowed_providers)
        )
        if not only:
            raise _refused(
                "allowed_providers",
                f"this key may not use the providers this request allows "
                f"({_listing(requested)}); allowed: {_listing(rails.allowed_providers)}",
            )
        prefs["only"], forced = only, True
    if rails.zdr:
        prefs["zdr"], forced = True, True
    if rails.data_collection == "deny":
        prefs["data_collection"], forced = "deny", True
    if forced:
        guarded["provider"] = prefs
    if rails.max_tokens is not None:
        cap, asked = rails.max_tokens, False
        for field in ("max_tokens", "max_completion_tokens"):
            value = body.get(field)
            if value is None:
                continue
            asked = True
            if isinstance(value, int) and value > cap:
                raise _refused(
                    "max_tokens",
                    f"this key may ask for at most {cap} completion tokens; "
                    f"this request's {field} is {value}",
                )
        if not asked:
            guarded["max_tokens"] = cap
        asked_for = (guarded.get(f) for f in ("max_tokens", "max_completion_tokens"))
        limit = min((v for v in asked_for if isinstance(v, int) and v > 0), default=cap)
        reasoning = body.get("reasoning")
        budget = reasoning.get("max_tokens") if isinstance(reasoning, dict) else None
        if isinstance(budget, int) and budget >= limit:
            # budget-style providers add a thinking budget that reaches the limit on top of it
            raise _refused(
                "max_tokens",
                f"this key may get at most {cap} completion tokens, reasoning included; "
                f"reasoning.max_tokens ({budget}) must stay below the request's limit ({limit})",
            )
    return guarded


def _forced_rules(rails: Guardrails) -> set[str]:
    rules: set[str] = set()
    if rails.allowed_providers is not None:
        rules.add("allowed_providers")
    if rails.zdr:
        rules.add("zdr")
    if rails.data_collection == "deny":
        rules.add("data_collection")
    return rules


_EXPLAINED = {
    "allowed_providers": "this key may only use the providers {providers}",
    "zdr": "this key may only use zero-data-retention endpoints",
    "data_collection": "this key may only use endpoints that do not collect prompts",
}


def guardrail_error(rails: Guardrails, error: GatewayError) -> GatewayError:
    """A plan's 404 "no endpoint can serve this" as a 403 naming the guardrail that could
    have emptied it: one whose forced provider preference removed endpoints (the filter
    that removed the last ones first). Any other error is returned as it is."""
    availability = error.metadata.get("availability")
    if error.status != 404 or not isinstance(availability, dict):
        return error
    forced = _forced_rules(rails)
    constraint = availability.get("constraint") or {}
    last = constraint.get("field") if isinstance(constraint, dict) else None
    causes = [last, *(availability.get("excluded_by") or [])]
    rule = next((_FILTERS[c] for c in causes if c in _FILTERS and _FILTERS[c] in forced), None)
    if rule is None:
        return error
    models = ", ".join(str(m) for m in availability.get("requested_models") or []) or "it"
    filters = ", ".join(str(f) for f in availability.get("excluded_by") or [])
    explained = _EXPLAINED[rule].format(providers=_listing(rails.allowed_providers or []))
    return _refused(
        rule,
        f"{explained}, and no such endpoint of {models} can serve this request"
        + (f" (endpoints excluded by: {filters})" if filters else ""),
        availability=availability,
    )


__all__ = ["Guardrails", "guard_body", "guardrail_error", "parse_guardrails"]
