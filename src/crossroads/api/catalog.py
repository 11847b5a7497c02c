"""The catalog API: GET /models, /models/count, /model/{author}/{slug},
/models/{author}/{slug}/endpoints, /providers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import JSON, gateway_of, parse_query
from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.routing.candidates import privacy_ok, provider_matches
from crossroads.schema.catalog import Endpoint, parse_price
from crossroads.storage import Popularity
from crossroads.telemetry.stats import LiveStats

Count = Annotated[int, Meta(ge=0)]
Amount = Annotated[float, Meta(ge=0)]  # a price in USD per million tokens, or a benchmark index
Fraction = Annotated[float, Meta(ge=0, le=1)]
Category = Literal[
    "programming",
    "roleplay",
    "marketing",
    "marketing/seo",
    "technology",
    "science",
    "translation",
    "legal",
    "finance",
    "health",
    "trivia",
    "academia",
]
Sort = Literal[
    "most-popular",
    "newest",
    "top-weekly",
    "pricing-low-to-high",
    "pricing-high-to-low",
    "context-high-to-low",
    "throughput-high-to-low",
    "latency-low-to-high",
    "intelligence-high-to-low",
    "coding-high-to-low",
    "agentic-high-to-low",
    "design-arena-elo-high-to-low",
]
Index = Literal["intelligence", "coding", "agentic"]  # Artificial Analysis indices


class ModelsQuery(Struct, kw_only=True):
    """The query of `GET /models` and `/models/count`: OpenRouter's `getModels` parameters
    with the spec's types and bounds. Lists are comma-separated, as sent."""

    offset: Count | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] | None = None
    category: Category | None = None
    supported_parameters: str = ""
    output_modalities: str = ""
    sort: Sort | None = None
    use_rss: str | None = None
    use_rss_chat_links: str | None = None  # only shapes an RSS feed, which is refused
    q: str = ""
    input_modalities: str = ""
    context: Annotated[int, Meta(ge=1)] | None = None
    min_price: Amount | None = None
    max_price: Amount | None = None
    arch: str = ""
    model_authors: str = ""
    providers: str = ""
    distillable: Literal["true", "false"] | None = None
    zdr: Literal["true"] | None = None
    region: Literal["eu", "us"] | None = None
    min_output_price: Amount | None = None
    max_output_price: Amount | None = None
    min_age_days: Count | None = None
    max_age_days: Count | None = None
    min_intelligence_index: Amount | None = None
    max_intelligence_index: Amount | None = None
    min_coding_index: Amount | None = None
    max_coding_index: Amount | None = None
    min_agentic_index: Amount | None = None
    max_agentic_index: Amount | None = None
    min_tool_success_rate: Fraction | None = None
    max_tool_success_rate: Fraction | None = None

    def index_bounds(self, index: Index) -> tuple[float | None, float | None]:
        bounds: tuple[float | None, float | None] = (
            getattr(self, f"min_{index}_index"),
            getattr(self, f"max_{index}_index"),
        )
        return bounds


# Filters this server has no data for: answering them would silently return wrong models.
_UNSUPPORTED = (
    ("category", "it has no usage data to rank models by use case"),
    ("distillable", "its catalog does not record which models may be distilled"),
    ("region", "its catalog does not record the data region of endpoints"),
    ("min_tool_success_rate", "it does not measure tool-calling success rates"),
    ("max_tool_success_rate", "it does not measure tool-calling success rates"),
)


def _models_query(request: Request) -> ModelsQuery:
    query = parse_query(request.query_params, ModelsQuery)
    for name, why in _UNSUPPORTED:
        if getattr(query, name) is not None:
            raise GatewayError(
                400, f"Query parameter '{name}' is not supported by this server: {why}"
            )
    if (query.use_rss or "").lower() == "true":
        raise GatewayError(
            400, "Query parameter 'use_rss' is not supported by this server: it serves no RSS feed"
        )
    return query


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


Check = Callable[[Model], bool]
_DAY = 86400
_PER_MILLION = Decimal(1_000_000)
# Tokenizers that name no model family: `arch` then looks for the family in the model's name.
_NO_FAMILY = frozenset({"", "other", "router", "media"})
_INDICES: tuple[Index, ...] = ("intelligence", "coding", "agentic")
_INDEX_SORTS: dict[str, Index] = {
    "intelligence-high-to-low": "intelligence",
    "coding-high-to-low": "coding",
    "agentic-high-to-low": "agentic",
}


def _modalities(model: Model, kind: str) -> set[str]:
    return set(model.info["architecture"].get(kind) or [])


def _price(model: Model, key: str) -> Decimal:
    """The model's listed `key` price ("prompt", "completion") in USD per million tokens."""
    return parse_price(model.info["pricing"].get(key)) * _PER_MILLION


def _age_days(model: Model, now: float) -> Decimal:
    return Decimal(max(0, int(now - model.info["created"]) // _DAY))


def _score(value: Any) -> Decimal | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    return None


def _benchmarks(model: Model) -> dict[str, Any]:
    benchmarks: dict[str, Any] = model.info.get("benchmarks") or {}
    return benchmarks


def _index(model: Model, index: Index) -> Decimal | None:
    """The model's Artificial Analysis index, or None without a score."""
    scores = _benchmarks(model).get("artificial_analysis") or {}
    return _score(scores.get(f"{index}_index"))


def _index_of(index: Index) -> Callable[[Model], Decimal | None]:
    return lambda model: _index(model, index)


def _arena_elo(model: Model) -> Decimal | None:
    """The model's best Design Arena ELO across arenas and categories."""
    entries = _benchmarks(model).get("design_arena") or []
    elos = [_score(e.get("elo")) for e in entries if isinstance(e, dict)]
    return max((elo for elo in elos if elo is not None), default=None)


def _best_p50(
    model: Model, figures: Callable[[str], dict[str, float] | None], pick: Callable[..., float]
) -> Decimal | None:
    """`pick` (max or min) of the recent medians of the model's endpoints that have figures."""
    medians = [f["p50"] for f in map(figures, (e.id for e in model.endpoints)) if f]
    return _score(pick(medians)) if medians else None


def _zdr(endpoint: Endpoint, catalog: Catalog) -> bool:
    """Whether the endpoint qualifies for zero data retention, as routing decides it for a
    request's `provider.zdr` (an unknown data policy never does)."""
    return privacy_ok(endpoint, catalog, zdr=True)


def _family(families: list[str]) -> Check:
    """`arch`: the model's tokenizer (OpenRouter's model group) starts with a family
    ("Llama" is Llama2/3/4, "Qwen" Qwen and Qwen3); for a model whose tokenizer names no
    family, a word of its name does ("Google: Gemma 3n" is a Gemma)."""
    wanted = [f.lower() for f in families]
    words = re.compile(r"\b(?:" + "|".join(map(re.escape, wanted)) + ")", re.IGNORECASE)

    def check(model: Model) -> bool:
        tokenizer = str(model.info["architecture"].get("tokenizer") or "").lower()
        if tokenizer not in _NO_FAMILY:
            return tokenizer.startswith(tuple(wanted))
        return tokenizer in wanted or words.search(model.info["name"]) is not None

    return check


def _within(
    value_of: Callable[[Model], Decimal | None], low: float | None, high: float | None
) -> list[Check]:
    """A check that the model's value is in [low, high]; a model without a value fails it."""
    if low is None and high is None:
        return []
    least = None if low is None else Decimal(repr(low))
    most = None if high is None else Decimal(repr(high))

    def check(model: Model) -> bool:
        value = value_of(model)
        return (
            value is not None
            and (least is None or value >= least)
            and (most is None or value <= most)
        )

    return [check]


def _filters(query: ModelsQuery, catalog: Catalog, now: float) -> list[Check]:
    checks: list[Check] = []
    outputs = set(_csv(query.output_modalities)) or {"text"}
    if "all" not in outputs:
        checks.append(lambda m: bool(outputs & _modalities(m, "output_modalities")))
    inputs = set(_csv(query.input_modalities))
    if inputs:
        checks.append(lambda m: inputs <= _modalities(m, "input_modalities"))
    parameters = set(_csv(query.supported_parameters))
    if parameters:
        checks.append(lambda m: parameters <= set(m.info["supported_parameters"]))
    text = query.q.lower()
    if text:
        checks.append(lambda m: text in m.id.lower() or text in m.info["name"].lower())
    context = query.context
    if context is not None:
        checks.append(lambda m: (m.info["context_length"] or 0) >= context)
    checks += _within(lambda m: _price(m, "prompt"), query.min_price, query.max_price)
    checks += _within(
        lambda m: _price(m, "completion"), query.min_output_price, query.max_output_price
    )
    checks += _within(lambda m: _age_days(m, now), query.min_age_days, query.max_age_days)
    for index in _INDICES:
        checks += _within(_index_of(index), *query.index_bounds(index))
    authors = {a.lower() for a in _csv(query.model_authors)}
    if authors:
        checks.append(lambda m: "/" in m.id and m.id.split("/", 1)[0].lower() in authors)
    providers = _csv(query.providers)
    if providers:
        checks.append(
            lambda m: any(provider_matches(e, p, catalog) for e in m.endpoints for p in providers)
        )
    if query.zdr == "true":
        checks.append(lambda m: any(_zdr(e, catalog) for e in m.endpoints))
    families = _csv(query.arch)
    if families:
        checks.append(_family(families))
    return checks


def filtered_models(catalog: Catalog, query: ModelsQuery) -> list[Model]:
    checks = _filters(query, catalog, time.time())
    return [m for m in catalog.models.values() if all(check(m) for check in checks)]


def _tokens(tokens: Mapping[str, int]) -> Callable[[Model], Decimal | None]:
    """A model's tokens in the usage rollups (None without any: it goes last)."""

    def value(model: Model) -> Decimal | None:
        found = tokens.get(model.id)
        return Decimal(found) if found else None

    return value


def _sort_key(
    sort: Sort, stats: LiveStats, popularity: Popularity
) -> tuple[Callable[[Model], Decimal | None], bool]:
    """What `sort` orders by, and whether from high to low."""
    if sort == "most-popular":  # tokens served, over everything recorded
        return _tokens(popularity.total), True
    if sort == "top-weekly":  # tokens served over the last 7 UTC days
        return _tokens(popularity.recent), True
    if sort == "newest":
        return lambda m: Decimal(m.info["created"]), True
    if sort in ("pricing-low-to-high", "pricing-high-to-low"):
        return (lambda m: (_price(m, "prompt") + _price(m, "completion")) / 2), sort.endswith(
            "high-to-low"
        )
    if sort == "context-high-to-low":
        return lambda m: _score(m.info["context_length"]), True
    if sort == "throughput-high-to-low":  # the best endpoint's recent median
        return lambda m: _best_p50(m, stats.throughput, max), True
    if sort == "latency-low-to-high":
        return lambda m: _best_p50(m, stats.latency, min), False
    if sort == "design-arena-elo-high-to-low":
        return _arena_elo, True
    return _index_of(_INDEX_SORTS[sort]), True


def sorted_models(
    models: list[Model], sort: Sort | None, stats: LiveStats, popularity: Popularity
) -> list[Model]:
    """`models` in the order `sort` asks for; models without a figure for it come last, and
    ties (and no `sort`) keep the catalog's order. `most-popular` and `top-weekly` rank by
    the tokens this server served each model (all time; the last 7 days), from the usage
    rollups as last refreshed in the background (`Rollups.popularity`: no database read
    here)."""
    if sort is None:
        return models
    value_of, descending = _sort_key(sort, stats, popularity)

    def order(model: Model) -> tuple[bool, Decimal]:
        value = value_of(model)
        if value is None:
            return True, Decimal(0)
        return False, -value if descending else value

    return sorted(models, key=order)


def _next_link(request: Request, offset: int, limit: int) -> str:
    """The next page: the same query with the page moved on."""
    rest = [(k, v) for k, v in request.query_params.multi_items() if k not in ("offset", "limit")]
    return "/api/v1/models?" + urlencode([("offset", offset), ("limit", limit), *rest])


async def list_models(request: Request) -> Response:
    query = _models_query(request)
    gateway = gateway_of(request)
    popularity = gateway.rollups.popularity()
    models = sorted_models(
        filtered_models(gateway.catalog, query), query.sort, gateway.stats, popularity
    )
    total = len(models)
    next_link = None
    if query.offset is not None or query.limit is not None:
        start, size = query.offset or 0, query.limit or 500
        models = models[start : start + size]
        if start + size < total:
            next_link = _next_link(request, start + size, size)
    data = [m.info for m in models]
    return JSON({"data": data, "total_count": total, "links": {"next": next_link}})


async def count_models(request: Request) -> Response:
    query = _models_query(request)
    models = filtered_models(gateway_of(request).catalog, query)
    return JSON({"data": {"count": len(models)}})


def _model(request: Request) -> Model:
    params = request.path_params
    model, _ = gateway_of(request).catalog.resolve(f"{params['author']}/{params['slug']}")
    return model


async def get_model(request: Request) -> Response:
    return JSON({"data": _model(request).info})


def public_endpoint(
    model: Model, endpoint: Endpoint, catalog: Catalog, stats: LiveStats
) -> dict[str, Any]:
    """OpenRouter's `PublicEndpoint`, with live figures and whether Crossroads can route to it.

    The spec requires an integer `context_length` and a `prompt` and `completion` price:
    an endpoint configured without them takes the model's context length (0 when neither
    states one: unknown, and the router does not limit it) and the price it is billed at
    (`Endpoint.price`: 0 when unset)."""
    provider = catalog.providers[endpoint.provider]
    params = endpoint.supported_parameters
    tool_choice = params is None or "tool_choice" in params
    return {
        "name": f"{provider.name} | {model.info['canonical_slug']}",
        "model_id": model.info["canonical_slug"],
        "model_name": model.info["name"],
        "context_length": endpoint.context_length or model.info["context_length"] or 0,
        "pricing": {"prompt": "0", "completion": "0", **endpoint.pricing},
        "provider_name": provider.name,
        "tag": endpoint.tag,
        "quantization": endpoint.quantization,
        "max_completion_tokens": endpoint.max_completion_tokens,
        "max_prompt_tokens": endpoint.max_prompt_tokens,
        "supported_parameters": (
            params if params is not None else model.info["supported_parameters"]
        ),
        "status": endpoint.status,
        "uptime_last_5m": stats.uptime(endpoint.id, 300),
        "uptime_last_30m": stats.uptime(endpoint.id, 1800),
        "uptime_last_1d": stats.uptime(endpoint.id, 86400),
        "supports_implicit_caching": endpoint.supports_implicit_caching,
        "supports_tool_choice": {
            "auto": tool_choice,
            "none": tool_choice,
            "required": tool_choice,
            "function": tool_choice,
        },
        "supports_diarization": False,
        "service_tier": None,
        "native_tools": {},
        "latency_last_30m": stats.latency(endpoint.id),
        "throughput_last_30m": stats.throughput(endpoint.id),
        "available": provider.usable,
        "unavailable_reason": provider.unusable_reason,
    }


async def list_endpoints(request: Request) -> Response:
    gateway = gateway_of(request)
    model = _model(request)
    info = model.info
    data = {k: info[k] for k in ("id", "name", "created", "description", "architecture")}
    data["endpoints"] = [
        public_endpoint(model, e, gateway.catalog, gateway.stats) for e in model.endpoints
    ]
    return JSON({"data": data})


async def list_providers(request: Request) -> Response:
    catalog = gateway_of(request).catalog
    rows = []
    for p in catalog.providers.values():
        rows.append(
            {
                "name": p.name,
                "slug": p.slug,
                "privacy_policy_url": p.privacy_policy_url,
                "terms_of_service_url": p.terms_of_service_url,
                "status_page_url": p.status_page_url,
                "headquarters": p.headquarters,
                "datacenters": p.datacenters,
                "api": p.api,
                "usable": p.usable,
                "unusable_reason": p.unusable_reason,
            }
        )
    return JSON({"data": rows})
