"""The `response-healing` plugin: a reply asked for as JSON, repaired when it almost is.

Pure: `heal(text, fmt)` takes the reply's text and the request's `response_format` and
returns the text to send and a note for the generation record (None: nothing to say).
The repair is `json_repair`'s (code fences, trailing commas, single quotes, unquoted keys,
truncated closing brackets, comments); the check is `jsonschema`'s, against the schema of a
`json_schema` format (a `json_object` format asks for any JSON object). A reply that is
valid already is left byte for byte as it came; one that cannot be repaired into what was
asked for is returned as it came, with a note saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import json_repair
import jsonschema
import orjson

from crossroads.schema.chat import ResponseFormat

MAX_HEALED_CHARS = 1 << 20  # longer replies are returned as they came (noted)
_EMPTY = ("", None)


@dataclass(frozen=True, slots=True)
class Healed:
    text: str  # what the client gets
    note: str | None = None  # for the record: what was done, or why nothing could be


def _problem(value: Any, fmt: ResponseFormat) -> str | None:
    """Why `value` is not what `fmt` asks for (None: it is)."""
    schema = fmt.json_schema.schema if fmt.json_schema is not None else None
    if fmt.type == "json_schema" and schema:
        try:
            validator = jsonschema.validators.validator_for(schema)
            validator.check_schema(schema)
        except jsonschema.SchemaError:
            return "the request's JSON schema is not a valid schema"
        error = jsonschema.exceptions.best_match(validator(schema).iter_errors(value))
        return None if error is None else f"it does not match the schema: {error.message}"
    return None if isinstance(value, dict) else "it is not a JSON object"


def heal(text: str, fmt: ResponseFormat) -> Healed:
    """The reply healed, or as it came with a note; never raises: the provider has answered
    and been paid by then (a schema that cannot be resolved, a number JSON cannot encode, a
    reply nested too deep are each a note)."""
    try:
        return _heal(text, fmt)
    except Exception as error:  # noqa: BLE001 - whatever the reply or schema, the answer stands
        return Healed(text, f"response-healing: not attempted ({type(error).__name__})")


def _heal(text: str, fmt: ResponseFormat) -> Healed:
    if len(text) > MAX_HEALED_CHARS:
        return Healed(text, f"response-healing: the reply is over {MAX_HEALED_CHARS} characters")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    else:
        problem = _problem(value, fmt)
        return Healed(text, None if problem is None else f"response-healing: {problem}")
    repaired = json_repair.repair_json(text, return_objects=True)
    if repaired in _EMPTY:
        return Healed(text, "response-healing: the reply is not JSON and could not be repaired")
    problem = _problem(repaired, fmt)
    if problem is not None:
        return Healed(text, f"response-healing: repaired, but {problem}; sent as it came")
    return Healed(orjson.dumps(repaired).decode(), "response-healing: the reply's JSON repaired")
