"""The in-memory catalog the request path reads: models, endpoints, providers.

Lookups are dict reads; the public shapes (OpenRouter's `Model`) are computed once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crossroads.errors import GatewayError
from crossroads.schema.catalog import Endpoint, ModelSpec, Provider
from crossroads.schema.chat import PARAMETERS

# Suffixes that change how a model is routed rather than naming a model of their own.
ROUTING_VARIANTS = frozenset({"nitro", "floor"})
_DEFAULT_ARCHITECTURE = {
    "modality": "text->text",
    "input_modalities": ["text"],
    "output_modalities": ["text"],
    "tokenizer": "Other",
    "instruct_type": None,
}


def _price_str(value: Any) -> Any:
    """Prices are decimal strings in every public shape; config files may write numbers."""
    return (
        format(value, "f")
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else value
    )


@dataclass(slots=True)
class Model:
    id: str
    info: dict[str, Any]  # OpenRouter's public `Model` object
    endpoints: list[Endpoint]

    @classmethod
    def build(cls, spec: ModelSpec, providers: Mapping[str, Provider], *, created: int) -> Model:
        endpoints = [_fill_endpoint(spec, e, providers) for e in spec.endpoints]
        return cls(id=spec.id, info=_public_model(spec, endpoints, created), endpoints=endpoints)

    @property
    def output_modalities(self) -> list[str]:
        return self.info["architecture"].get("output_modalities") or ["text"]

    @property
    def input_modalities(self) -> list[str]:
        return self.info["architecture"].get("input_modalities") or ["text"]


@dataclass(slots=True)
class Catalog:
    providers: dict[str, Provider]
    models: dict[str, Model]
    _by_lower: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_lower = {m.lower(): m for m in self.models}

    def find(self, model_id: str) -> tuple[Model, str | None] | None:
        """The model a request names, and its routing variant (`nitro`, `floor`) if any."""
        exact = self._by_lower.get(model_id.lower())
        if exact:
            return self.models[exact], None
        base, _, variant = model_id.rpartition(":")
        if base and variant in ROUTING_VARIANTS:
            found = self._by_lower.get(base.lower())
            if found:
                return self.models[found], variant
        return None

    def canonical_id(self, model_id: str) -> str | None:
        """The id of the model a request's name resolves to (any case, routing variants
        dropped); None when no model has it."""
        found = self.find(model_id)
        return found[0].id if found else None

    def resolve(self, model_id: str) -> tuple[Model, str | None]:
        found = self.find(model_id)
        if found is None:
            raise GatewayError(
                404,
                f"{model_id} is not a valid model ID",
                metadata={
                    "availability": {
                        "code": "model_not_found",
                        "retryable": False,
                        "requested_models": [model_id],
                    }
                },
            )
        return found

    def add(self, model: Model) -> None:
        """A model found at run time (a local server's)."""
        self.models[model.id] = model
        self._by_lower[model.id.lower()] = model.id

    def has_endpoint(self, endpoint_id: str) -> bool:
        """Whether `model@tag` names an endpoint of this catalog (replicas' figures for
        anything else are not kept)."""
        model_id, _, tag = endpoint_id.rpartition("@")
        model = self.models.get(model_id)
        return model is not None and any(e.tag == tag for e in model.endpoints)

    def usable_providers(self) -> list[Provider]:
        return [p for p in self.providers.values() if p.usable]


def _fill_endpoint(spec: ModelSpec, e: Endpoint, providers: Mapping[str, Provider]) -> Endpoint:
    e.tag = e.tag or e.provider
    e.provider_name = e.provider_name or providers[e.provider].name
    e.upstream_model = e.upstream_model or spec.id.removesuffix(":free")
    e.context_length = e.context_length or spec.context_length
    e.pricing = {k: _price_str(v) for k, v in e.pricing.items()}
    e.model_id = spec.id
    return e


def _public_model(spec: ModelSpec, endpoints: list[Endpoint], created: int) -> dict[str, Any]:
    cheapest = min(endpoints, key=Endpoint.blended_price, default=None)
    first = endpoints[0] if endpoints else None
    if spec.supported_parameters is not None:
        params = spec.supported_parameters
    elif any(e.supported_parameters is None for e in endpoints):
        params = sorted(PARAMETERS)
    else:
        params = sorted({p for e in endpoints for p in e.supported_parameters or []})
    context = (
        spec.context_length or max((e.context_length or 0 for e in endpoints), default=0) or None
    )
    info: dict[str, Any] = {
        "id": spec.id,
        "canonical_slug": spec.canonical_slug or spec.id,
        "hugging_face_id": spec.hugging_face_id,
        "name": spec.name or spec.id,
        "created": spec.created if spec.created is not None else created,
        "description": spec.description or "",
        "context_length": context,
        "architecture": {**_DEFAULT_ARCHITECTURE, **(spec.architecture or {})},
        "pricing": {
            k: _price_str(v)
            for k, v in (spec.pricing or (cheapest.pricing if cheapest else {})).items()
        },
        "top_provider": spec.top_provider
        or {
            "context_length": first.context_length if first else context,
            "max_completion_tokens": first.max_completion_tokens if first else None,
            "is_moderated": False,
        },
        "per_request_limits": spec.per_request_limits,
        "supported_parameters": params,
        "default_parameters": spec.default_parameters,
        "supported_voices": spec.supported_voices,
        "knowledge_cutoff": spec.knowledge_cutoff,
        "expiration_date": spec.expiration_date,
        "links": {"details": f"/api/v1/models/{spec.id}/endpoints"},
    }
    info["pricing"].setdefault("prompt", "0")
    info["pricing"].setdefault("completion", "0")
    if spec.reasoning is not None:
        info["reasoning"] = spec.reasoning
    if spec.benchmarks is not None:
        info["benchmarks"] = spec.benchmarks
    return info
