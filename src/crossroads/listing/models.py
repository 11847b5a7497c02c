"""The catalog's models filtered and sorted as OpenRouter's `GET /models` query asks:
the API (`api/catalog.py`) and the website's /models page (`web/models_list.py`) share it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from crossroads.catalog import Catalog, Model
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
