"""The model page's view models: the header (`ModelView`) and its endpoints (`EndpointRow`).

Built from the gateway's in-memory state, as the API reads it: the catalog's model and
endpoints, live statistics (`LiveStats`: latency and throughput medians of the last 30
minutes, uptime of the last day, effective price of the past hour), circuits, and the
usage rollups' cached daily figures (weekly tokens through this server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from crossroads.catalog import Catalog, Model
from crossroads.storage import Usage
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import EffectivePrice, LiveStats
from crossroads.web.figures import endpoint_figures, is_free, provider_href
from crossroads.web.urls import model_href

WEEK_DAYS = 7
_LIST_PRICES = ("prompt", "completion")


@dataclass(frozen=True, slots=True)
class ExtraPrice:
    """A price beyond prompt and completion ("request", "image", "input_cache_read", ...)."""

    name: str
    value: str  # USD per unit, as the catalog writes it


@dataclass(frozen=True, slots=True)
class EndpointRow:
    """One provider of the model, with its live figures and whether it is usable here."""

    id: str  # "model@tag"
    provider: str  # slug
    provider_name: str
    provider_href: str
    tag: str
    quantization: str | None
    context_length: int | None
    max_output: int | None
    prompt_price: str  # USD per token, as the catalog writes it
    completion_price: str
    extra_prices: list[ExtraPrice]
    latency_p50: float | None  # ms to the first token, last 30 minutes
    throughput_p50: float | None  # tokens/s, last 30 minutes
    uptime: float | None  # percent, last day
    requests: int  # attempts, last day
    circuit: str  # closed | open | half_open
    usable: bool  # its provider has credentials and is reachable
    reason: str | None  # why not, when not usable
    effective: EffectivePrice | None  # the past hour's actual cost per million tokens


@dataclass(frozen=True, slots=True)
class ModelView:
    """The model page's header and what every tab shares."""

    id: str
    name: str  # "OpenAI: gpt-oss-120b (free)"
    short_name: str  # "gpt-oss-120b (free)": the name without its author prefix
    author: str  # "openai"
    initial: str  # the avatar's letter
    href: str
    description: str
    input_modalities: list[str]
    output_modalities: list[str]
    prompt_price: str  # USD per token (the model's list price)
    completion_price: str
    free: bool
    context_length: int | None
    created: int  # epoch seconds: the release date
    weekly_tokens: int | None  # tokens through this server, last 7 days; None: unavailable
    hugging_face_id: str | None
    knowledge_cutoff: str | None
    supported_parameters: list[str]
    reasoning: bool  # takes the `reasoning` parameter
    endpoints: list[EndpointRow]
    usable: bool  # at least one endpoint is usable here
    missing: list[tuple[str, str]]  # (provider name, reason) of the unusable ones


def short_name(name: str) -> str:
    """A model name without its "Author: " prefix."""
    head, sep, rest = name.partition(": ")
    return rest if sep and rest and len(head) <= 40 else name


def endpoint_rows(
    model: Model, catalog: Catalog, stats: LiveStats, circuits: Circuits
) -> list[EndpointRow]:
    """The model's endpoints as the page shows them, in the catalog's order."""
    rows: list[EndpointRow] = []
    for endpoint in model.endpoints:
        figures = endpoint_figures(endpoint, catalog, stats, circuits)
        pricing = {"prompt": "0", "completion": "0", **endpoint.pricing}
        rows.append(
            EndpointRow(
                id=endpoint.id,
                provider=endpoint.provider,
                provider_name=figures.provider_name,
                provider_href=provider_href(endpoint.provider),
                tag=endpoint.tag,
                quantization=endpoint.quantization,
                context_length=endpoint.context_length or model.info["context_length"],
                max_output=endpoint.max_completion_tokens,
                prompt_price=str(pricing["prompt"]),
                completion_price=str(pricing["completion"]),
                extra_prices=[
                    ExtraPrice(name, str(value))
                    for name, value in sorted(pricing.items())
                    if name not in _LIST_PRICES and value not in (None, "", "0")
                ],
                latency_p50=figures.latency,
                throughput_p50=figures.throughput,
                uptime=figures.uptime,
                requests=figures.requests,
                circuit=figures.circuit,
                usable=figures.usable,
                reason=figures.reason,
                effective=stats.effective_price(endpoint.id),
            )
        )
    return rows


def weekly_tokens(daily: Mapping[date, Usage] | None, today: date) -> int | None:
    """Prompt + completion tokens of the last 7 days (today included); None: unavailable."""
    if daily is None:
        return None
    first = today - timedelta(days=WEEK_DAYS - 1)
    return sum(u.total_tokens for day, u in daily.items() if first <= day <= today)


def model_view(model: Model, rows: list[EndpointRow], *, weekly: int | None) -> ModelView:
    """The header of `model`'s page from its catalog entry and endpoint rows."""
    info: dict[str, Any] = model.info
    architecture = info.get("architecture") or {}
    pricing = info.get("pricing") or {}
    author = model.id.split("/", 1)[0]
    name = str(info.get("name") or model.id)
    parameters = list(info.get("supported_parameters") or [])
    return ModelView(
        id=model.id,
        name=name,
        short_name=short_name(name),
        author=author,
        initial=(author[:1] or "?").upper(),
        href=model_href(model.id),
        description=str(info.get("description") or ""),
        input_modalities=list(architecture.get("input_modalities") or ["text"]),
        output_modalities=list(architecture.get("output_modalities") or ["text"]),
        prompt_price=str(pricing.get("prompt", "0")),
        completion_price=str(pricing.get("completion", "0")),
        free=is_free(pricing),
        context_length=info.get("context_length"),
        created=int(info.get("created") or 0),
        weekly_tokens=weekly,
        hugging_face_id=info.get("hugging_face_id"),
        knowledge_cutoff=info.get("knowledge_cutoff"),
        supported_parameters=parameters,
        reasoning="reasoning" in parameters,
        endpoints=rows,
        usable=any(row.usable for row in rows),
        missing=[(row.provider_name, row.reason or "not usable") for row in rows if not row.usable],
    )
