"""OpenRouter's OpenAPI spec as JSON Schema: validate a response body, or one SSE event,
against the schema the spec gives for an operation, a status and a content type.

OpenAPI 3.1 schemas are JSON Schema 2020-12: the whole spec is one `referencing` resource,
so every `$ref` (`#/components/schemas/...`) resolves inside it. `discriminator` is not a
JSON Schema keyword; where a `oneOf` has one, the value of the discriminating property
picks the branch (as OpenAPI prescribes), so that an error names the branch that failed
rather than "is not valid under any of the given schemas".

One relaxation, on purpose: the spec closes provider display names (`ProviderName`, and
the same list inline under `provider` / `provider_name`) to OpenRouter's marketplace; a
self-hosted gateway names its own providers, so those enums are read as plain strings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "openrouter-openapi.yaml"
PACKAGED = ROOT / "src" / "crossroads" / "api" / "data" / "openrouter-openapi.yaml"
URI = "urn:openrouter:openapi"
# What this server routes that the spec documents (/completions and the /auth/key alias
# of /key are routed too, but the current spec has neither).
SERVED_OPERATIONS = {
    "/chat/completions": {"post"},
    "/messages": {"post"},
    "/responses": {"post"},
    "/models": {"get"},
    "/models/count": {"get"},
    "/models/{author}/{slug}/endpoints": {"get"},
    "/model/{author}/{slug}": {"get"},
    "/providers": {"get"},
    "/generation": {"get"},
    "/key": {"get"},
    "/keys": {"get", "post"},
    "/keys/{hash}": {"get", "patch", "delete"},
    "/credits": {"get"},
    "/activity": {"get"},
}


def spec_path() -> Path:
    """The reference copy beside the repository when there is one, else the packaged copy
    (a test checks that they are the same file)."""
    return REFERENCE if REFERENCE.exists() else PACKAGED


@functools.cache
def spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(spec_path().read_text(encoding="utf-8"), Loader=loader)


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _provider_names(node: dict[str, Any]) -> bool:
    """An enum of OpenRouter's provider display names (over a hundred, Anthropic among them)."""
    values = node.get("enum")
    return isinstance(values, list) and len(values) > 20 and "Anthropic" in values


def open_provider_names(node: Any) -> Any:
    """A copy of `node` with every provider-name enum removed (see the module docstring)."""
    if isinstance(node, list):
        return [open_provider_names(item) for item in node]
    if not isinstance(node, dict):
        return node
    skip = _provider_names(node)
    return {k: open_provider_names(v) for k, v in node.items() if not (skip and k == "enum")}


def _prepared(node: Any) -> Any:
    """A copy of `node` where each `oneOf` with a discriminator mapping becomes an
    if/then per mapped value (a value outside the mapping still fails the `oneOf`), and
    provider-name enums are open."""
    if isinstance(node, list):
        return [_prepared(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _prepared(v) for k, v in node.items() if not (k == "enum" and _provider_names(node))}
    disc = node.get("discriminator")
    if isinstance(disc, dict) and disc.get("mapping") and "oneOf" in node:
        prop, mapping = disc["propertyName"], disc["mapping"]
        mapped = {ref for ref in mapping.values()}
        branches = [b.get("$ref") for b in node["oneOf"] if isinstance(b, dict)]
        if all(ref in mapped for ref in branches):
            one_of = out.pop("oneOf")
            rules: list[dict[str, Any]] = [
                {
                    "if": {"properties": {prop: {"const": value}}, "required": [prop]},
                    "then": {"$ref": ref},
                }
                for value, ref in mapping.items()
            ]
            rules.append(
                {
                    "if": {"properties": {prop: {"enum": sorted(mapping)}}, "required": [prop]},
                    "else": {"oneOf": one_of},
                }
            )
            out["allOf"] = [*out.get("allOf", []), *rules]
    return out


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value.upper() and parsed.tzinfo is not None


@functools.cache
def _prepared_spec() -> dict[str, Any]:
    prepared: dict[str, Any] = _prepared(spec())
    return prepared


@functools.cache
def _registry() -> Registry:
    resource = Resource.from_contents(_prepared_spec(), default_specification=DRAFT202012)
    return Registry().with_resource(URI, resource)


@functools.cache
def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(_date_time)
    return checker


@functools.cache
def validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": URI + pointer}, registry=_registry(), format_checker=_format_checker()
    )


@dataclass(frozen=True)
class Failure:
    """One way an instance does not fit: where in it, which schema keyword, and why."""

    at: str  # JSON path in the instance
    schema_path: str  # the keywords followed, refs included
    message: str

    def __str__(self) -> str:
        return f"{self.at}: {self.message[:300]} [{self.schema_path}]"


def _resolve(pointer: str) -> Any:
    node: Any = _prepared_spec()
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _named_path(pointer: str, keywords: Iterable[Any]) -> str:
    """`keywords` (an error's schema path, which skips each `$ref` it followed) with the name
    of each component entered: e.g. `MessagesResult/allOf/0/properties/usage >
    AnthropicUsage/required`."""
    node = _resolve(pointer)
    out = [pointer.rsplit("/", 1)[-1] if "/components/" in pointer else "response"]
    for keyword in keywords:
        while isinstance(node, dict) and keyword not in node and "$ref" in node:
            ref = node["$ref"].removeprefix(URI)
            out.append(f"> {ref.rsplit('/', 1)[-1]}")
            node = _resolve(ref)
        out.append(str(keyword))
        node = node[keyword] if isinstance(node, (dict, list)) else None
    return "/".join(out).replace("/> ", " > ")


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "enum" and isinstance(error.validator_value, list):
        values = error.validator_value
        shown = ", ".join(repr(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        return f"{error.instance!r} is not one of [{shown}]"
    return error.message


def _wrong_kind(error: jsonschema.ValidationError) -> bool:
    """A branch of an `anyOf`/`oneOf` rejected the value for its kind: not of the branch's
    JSON type, or another `type` tag (`relative_path` starts at the value)."""
    path = list(error.relative_path)
    if not path:
        return error.validator == "type"
    return path == ["type"] and error.validator in ("const", "enum")


def _explained(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors that say why: for an `anyOf`/`oneOf` nothing matched, those of the one
    branch meant for this kind of value (its `type` tag fits), when there is one."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [error]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [errors for errors in branches.values() if not any(map(_wrong_kind, errors))]
    if len(meant) != 1:
        return [jsonschema.exceptions.best_match([error])]
    return [leaf for sub in meant[0] for leaf in _explained(sub)]


def failures(instance: Any, pointer: str) -> list[Failure]:
    """Every way `instance` fails the schema at `pointer` (a JSON pointer into the spec),
    once per place and reason."""
    found: dict[tuple[str, str], Failure] = {}
    errors = validator(pointer).iter_errors(instance)
    for best in (leaf for error in errors for leaf in _explained(error)):
        message = _message(best)
        if (best.json_path, message) not in found:
            path = _named_path(pointer, best.absolute_schema_path)
            found[(best.json_path, message)] = Failure(best.json_path, path, message)
    return list(found.values())


def operation(path: str, method: str) -> dict[str, Any]:
    return spec()["paths"][path][method.lower()]


def response_pointer(path: str, method: str, status: int, content_type: str) -> str:
    """The pointer of the schema the spec gives for `status` (or `default`) and
    `content_type`; KeyError when the spec documents no such response."""
    responses = operation(path, method)["responses"]
    key = str(status) if str(status) in responses else "default"
    content = responses[key]["content"]
    if content_type not in content:
        raise KeyError(f"{method.upper()} {path} {status}: no {content_type} response")
    return _pointer(
        "paths", path, method.lower(), "responses", key, "content", content_type, "schema"
    )


def check(instance: Any, path: str, method: str, status: int, content_type: str) -> list[str]:
    """The failures of a response body, as readable lines (empty when it conforms)."""
    try:
        pointer = response_pointer(path, method, status, content_type)
    except KeyError as exc:
        return [f"undocumented response: {exc}"]
    return [str(f) for f in failures(instance, pointer)]


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each event in an SSE body; comments and `[DONE]` are kept out
    except `[DONE]` itself, which callers check for."""
    events: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for line in text.splitlines() + [""]:
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
    return events


def _kind(payload: Any) -> str:
    if isinstance(payload, dict):
        return str(payload.get("type") or payload.get("object") or "?")
    return type(payload).__name__


def stream_failures(path: str, text: str) -> list[str]:
    """Each event of a 200 SSE body of `POST path` against the spec's text/event-stream
    schema: `{data}` (chat, responses) or `{event, data}` (messages), `data` JSON-decoded as
    the spec's SDK convention has it, its `[DONE]` sentinel allowed as the last event."""
    events = sse_events(text)
    if not events:
        return ["a stream without a single event"]
    content = operation(path, "post")["responses"]["200"]["content"]["text/event-stream"]
    sentinel = content.get("x-speakeasy-sse-sentinel")
    properties = (spec()["components"]["schemas"].get(_ref_name(content["schema"])) or {}).get(
        "properties"
    ) or {}
    problems = []
    for i, (name, data) in enumerate(events):
        if data == sentinel:
            if i != len(events) - 1:
                problems.append(f"event {i}: {sentinel} before the end of the stream")
            continue
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            problems.append(f"event {i}: data is not JSON: {data[:120]!r}")
            continue
        instance: dict[str, Any] = {"data": payload}
        if "event" in properties:
            instance["event"] = name
        if name is not None and isinstance(payload, dict) and payload.get("type") != name:
            problems.append(f"event {i}: named {name!r} but its type is {payload.get('type')!r}")
        for line in check(instance, path, "post", 200, "text/event-stream"):
            problems.append(f"event {i} ({name or _kind(payload)}): {line}")
    return problems


def _ref_name(schema: dict[str, Any]) -> str:
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]
