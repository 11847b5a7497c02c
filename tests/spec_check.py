"""Checking replies and stream events against the reference OpenAPI document's schemas.

The document is the copy the server ships (`src/crossroads/api/data/`), loaded once per
test session through the `spec` fixtures of the modules that use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[1] / "src/crossroads/api/data/openrouter-openapi.yaml"
URI = "urn:openrouter-openapi"


class SpecChecker:
    def __init__(self) -> None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        spec = yaml.load(SPEC.read_text(), Loader=loader)  # noqa: S506 - a safe loader
        # OpenRouter's own SDK reads `ProviderName` as an open enum (any string, its
        # `UnrecognizedStr`): a self-hosted router names providers from its own config.
        spec["components"]["schemas"]["ProviderName"] = {"type": "string"}
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(URI, resource)
        self.validators: dict[str, jsonschema.Draft202012Validator] = {}

    def errors(self, schema: str, instance: Any) -> list[str]:
        validator = self.validators.get(schema)
        if validator is None:
            ref = {"$ref": f"{URI}#/components/schemas/{schema}"}
            validator = jsonschema.Draft202012Validator(ref, registry=self.registry)
            self.validators[schema] = validator
        out = []
        for error in validator.iter_errors(instance):
            best = jsonschema.exceptions.best_match([error])
            out.append(f"{schema} at {list(best.absolute_path)}: {best.message[:400]}")
        return out

    def check(self, schema: str, instance: Any) -> None:
        errors = self.errors(schema, instance)
        assert not errors, "\n".join(errors)

    def check_events(self, schema: str, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Each (event name, data) of a stream against a `*StreamingResponse` schema."""
        assert events
        for name, data in events:
            assert name == data["type"], (name, data)
            self.check(schema, {"event": name, "data": data})


def sse_events(lines: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The named JSON events of a stream's lines (comments and `[DONE]` left out)."""
    events, name = [], ""
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: {"):
            events.append((name, orjson.loads(line[len("data: ") :])))
    return events
