"""`/compare?models=a,b[,c]`: two or three models side by side: prices, context, max
output, modalities, providers (usable here or not), the best latency and throughput among
their endpoints (medians of the last 30 minutes), uptime over the last day and tokens
through this server this week.

`models` is comma-separated and may also repeat (`models=a&models=b`, as the page's own
GET form sends it); blanks and repeats are dropped. Fewer than two models shows the form
to pick them (200); an unknown model or more than three is a 400 page that says which,
with the form filled in to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import gateway_of
from crossroads.catalog import Catalog, Model
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats
from crossroads.web.figures import (
    Best,
    EndpointFigures,
    best_latency,
    best_throughput,
    endpoint_figures,
    is_free,
    weighted_uptime,
)
from crossroads.web.templating import render
from crossroads.web.urls import model_href

MAX_MODELS = 3
SLOTS = 3  # inputs on the form


@dataclass(frozen=True, slots=True)
class Compared:
    """One model's column."""

    id: str
    name: str
    href: str
    author: str
    created: int
    context: int | None
    max_output: int | None
    prompt: str  # USD per token, the catalog's string
    completion: str
    free: bool
    inputs: list[str]
    outputs: list[str]
    endpoints: list[EndpointFigures]
    usable_providers: int
    latency: Best | None
    throughput: Best | None
    uptime: float | None  # percent over the last day, all endpoints by their attempts
    weekly_tokens: int


def compared(
    model: Model, catalog: Catalog, stats: LiveStats, circuits: Circuits, weekly: int
) -> Compared:
    info = model.info
    rows = [endpoint_figures(e, catalog, stats, circuits) for e in model.endpoints]
    return Compared(
        id=model.id,
        name=info["name"],
        href=model_href(model.id),
        author=model.id.split("/", 1)[0] if "/" in model.id else "",
        created=info["created"],
        context=info["context_length"],
        max_output=(info.get("top_provider") or {}).get("max_completion_tokens"),
        prompt=info["pricing"]["prompt"],
        completion=info["pricing"]["completion"],
        free=is_free(info["pricing"]),
        inputs=list(info["architecture"].get("input_modalities") or []),
        outputs=list(info["architecture"].get("output_modalities") or []),
        endpoints=rows,
        usable_providers=sum(1 for r in rows if r.usable),
        latency=best_latency(rows),
        throughput=best_throughput(rows),
        uptime=weighted_uptime((r.uptime, r.requests) for r in rows),
        weekly_tokens=weekly,
    )


def requested(values: list[str]) -> list[str]:
    """The model ids asked for, in order: comma-separated and repeated values, blanks and
    repeats dropped."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if name and name not in out:
                out.append(name)
    return out


async def compare_page(request: Request) -> Response:
    gateway = gateway_of(request)
    catalog = gateway.catalog
    names = requested(request.query_params.getlist("models"))
    errors: list[str] = []
    found: list[Model] = []
    for name in names:
        hit = catalog.find(name)
        if hit is None:
            errors.append(f"No model is called '{name[:200]}' on this server.")
        elif hit[0] not in found:
            found.append(hit[0])
    if len(names) > MAX_MODELS:
        errors.append(f"Compare two or three models at a time, not {len(names)}.")
    columns: list[Compared] = []
    if not errors and len(found) >= 2:
        weekly = gateway.rollups.popularity().recent
        columns = [
            compared(m, catalog, gateway.stats, gateway.circuits, weekly.get(m.id, 0))
            for m in found
        ]
    slots = names[:SLOTS]
    return render(
        request,
        "compare.html",
        status_code=400 if errors else 200,
        errors=errors,
        columns=columns,
        slots=slots + [""] * (SLOTS - len(slots)),
        model_ids=sorted(catalog.models),
    )
