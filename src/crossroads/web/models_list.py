"""`/models`: every model of the catalog, searchable, filtered and sorted on the server.

The filters live in the URL (a GET form that works without JavaScript) and are answered
by the same code as `GET /api/v1/models` (`api.catalog`'s filters and sorts), plus two of
the website's own: `free=1` (prompt and completion both free) and `usable=1` (a provider
of the model is usable on this server). A malformed value is reported on the page (status
400) and left out; the other filters still apply.

Query: `q` (id or name contains), `input` / `output` (a modality), `context` (at least
this many tokens), `max_price` (USD per million prompt tokens), `free=1`, `provider`
(a provider slug), `usable=1`, `sort` (`SORTS`), `page` (from 1, `PAGE_SIZE` models each).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from crossroads.api.http import gateway_of
from crossroads.catalog import Catalog, Model
from crossroads.listing.models import ModelsQuery, Sort, filtered_models, sorted_models
from crossroads.web.figures import is_free, model_usable
from crossroads.web.templating import render
from crossroads.web.urls import model_href

PAGE_SIZE = 100
SUMMARY_CHARS = 180
# sort name in the URL -> (label, the API's sort)
SORTS: dict[str, tuple[str, Sort]] = {
    "newest": ("Newest", "newest"),
    "price": ("Price: low to high", "pricing-low-to-high"),
    "context": ("Context: longest first", "context-high-to-low"),
    "usage": ("Tokens this week", "top-weekly"),
    "throughput": ("Throughput: fastest first", "throughput-high-to-low"),
    "latency": ("Latency: lowest first", "latency-low-to-high"),
}
DEFAULT_SORT = "newest"
CONTEXT_CHOICES = (4_000, 16_000, 32_000, 64_000, 128_000, 200_000, 1_000_000)


@dataclass(frozen=True, slots=True)
class ModelFilters:
    """The `/models` query as the page reads it (defaults: no filter, newest first)."""

    q: str = ""
    input: str = ""  # an input modality the model must take
    output: str = ""  # an output modality the model must produce
    context: int | None = None  # minimum context length, tokens
    max_price: float | None = None  # USD per million prompt tokens
    free: bool = False
    provider: str = ""  # provider slug
    usable: bool = False
    sort: str = DEFAULT_SORT
    page: int = 1

    def api_query(self) -> ModelsQuery:
        """The API's query for the filters it shares with this page."""
        return ModelsQuery(
            q=self.q,
            input_modalities=self.input,
            output_modalities=self.output or "all",
            context=self.context,
            max_price=0.0 if self.free else self.max_price,
            max_output_price=0.0 if self.free else None,
            providers=self.provider,
        )

    def params(self) -> list[tuple[str, str]]:
        """The query string's pairs for the values that differ from the defaults."""
        pairs: list[tuple[str, str]] = []
        for name, value in (
            ("q", self.q),
            ("input", self.input),
            ("output", self.output),
            ("context", "" if self.context is None else str(self.context)),
            ("max_price", "" if self.max_price is None else f"{self.max_price:g}"),
            ("free", "1" if self.free else ""),
            ("provider", self.provider),
            ("usable", "1" if self.usable else ""),
            ("sort", "" if self.sort == DEFAULT_SORT else self.sort),
            ("page", "" if self.page == 1 else str(self.page)),
        ):
            if value:
                pairs.append((name, value))
        return pairs

    def url(self, **changes: object) -> str:
        """`/models` with these filters, `changes` applied (the page goes back to 1 unless
        `page` is among them)."""
        changed = replace(self, **{"page": 1, **changes})  # type: ignore[arg-type]
        query = urlencode(changed.params())
        return "/models" + ("?" + query if query else "")

    def active(self) -> list[tuple[str, str]]:
        """The filters in force as (label, URL without that filter), for the empty state."""
        found: list[tuple[str, str]] = []
        if self.q:
            found.append((f'Search "{self.q}"', self.url(q="")))
        if self.input:
            found.append((f"Input: {self.input}", self.url(input="")))
        if self.output:
            found.append((f"Output: {self.output}", self.url(output="")))
        if self.context is not None:
            found.append((f"Context at least {self.context:,} tokens", self.url(context=None)))
        if self.max_price is not None:
            label = f"Input price at most ${self.max_price:g}/M"
            found.append((label, self.url(max_price=None)))
        if self.free:
            found.append(("Free only", self.url(free=False)))
        if self.provider:
            found.append((f"Provider: {self.provider}", self.url(provider="")))
        if self.usable:
            found.append(("Usable here", self.url(usable=False)))
        return found


@dataclass(slots=True)
class _Reader:
    """Reads the query's values, noting each malformed one (left out)."""

    params: Mapping[str, str]
    problems: list[str] = field(default_factory=list)

    def text(self, name: str, limit: int = 200) -> str:
        return self.params.get(name, "").strip()[:limit]

    def choice(self, name: str, allowed: Collection[str]) -> str:
        value = self.text(name)
        if value and value not in allowed:
            self.problems.append(f"Unknown {name} '{value}': it was left out.")
            return ""
        return value

    def flag(self, name: str) -> bool:
        value = self.text(name).lower()
        if value in ("", "0", "false", "off"):
            return False
        if value in ("1", "true", "on", "yes"):
            return True
        self.problems.append(f"'{name}' takes 1 or 0, not '{value}': it was left out.")
        return False

    def whole(self, name: str, *, least: int) -> int | None:
        value = self.text(name)
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            number = least - 1
        if number < least:
            self.problems.append(
                f"'{name}' takes a whole number from {least}, not '{value}': it was left out."
            )
            return None
        return number

    def amount(self, name: str) -> float | None:
        value = self.text(name)
        if not value:
            return None
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not math.isfinite(number) or number < 0:
            self.problems.append(
                f"'{name}' takes a price of 0 or more (USD per million tokens), not '{value}': "
                "it was left out."
            )
            return None
        return number


@dataclass(frozen=True, slots=True)
class Choices:
    """What the form's selects offer, from the catalog."""

    inputs: list[str]
    outputs: list[str]
    providers: list[tuple[str, str]]  # (slug, name) of providers that serve a model

    @classmethod
    def of(cls, catalog: Catalog) -> Choices:
        inputs: set[str] = set()
        outputs: set[str] = set()
        serving: set[str] = set()
        for model in catalog.models.values():
            architecture = model.info["architecture"]
            inputs.update(architecture.get("input_modalities") or [])
            outputs.update(architecture.get("output_modalities") or [])
            serving.update(e.provider for e in model.endpoints)
        providers = sorted(
            ((slug, catalog.providers[slug].name) for slug in serving),
            key=lambda pair: pair[1].lower(),
        )
        return cls(sorted(inputs), sorted(outputs), providers)


def parse_filters(params: Mapping[str, str], choices: Choices) -> tuple[ModelFilters, list[str]]:
    """The page's filters from its query, and what was wrong with it (values left out)."""
    read = _Reader(params)
    sort = read.choice("sort", SORTS) or DEFAULT_SORT
    filters = ModelFilters(
        q=read.text("q"),
        input=read.choice("input", set(choices.inputs)),
        output=read.choice("output", set(choices.outputs)),
        context=read.whole("context", least=1),
        max_price=read.amount("max_price"),
        free=read.flag("free"),
        provider=read.choice("provider", {slug for slug, _ in choices.providers}),
        usable=read.flag("usable"),
        sort=sort,
        page=read.whole("page", least=1) or 1,
    )
    return filters, read.problems


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model as the list shows it."""

    id: str
    name: str
    href: str
    summary: str  # the description's start
    context: int | None
    prompt: str  # USD per token, the catalog's string
    completion: str
    free: bool
    inputs: list[str]
    outputs: list[str]
    providers: int  # endpoints
    usable: bool  # a provider of the model is usable here
    weekly_tokens: int  # through this server, the last 7 days
    created: int


def _summary(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= SUMMARY_CHARS:
        return text
    return text[:SUMMARY_CHARS].rsplit(" ", 1)[0] + "\u2026"


def model_row(model: Model, catalog: Catalog, weekly: Mapping[str, int]) -> ModelRow:
    info = model.info
    architecture = info["architecture"]
    return ModelRow(
        id=model.id,
        name=info["name"],
        href=model_href(model.id),
        summary=_summary(info["description"]),
        context=info["context_length"],
        prompt=info["pricing"]["prompt"],
        completion=info["pricing"]["completion"],
        free=is_free(info["pricing"]),
        inputs=list(architecture.get("input_modalities") or []),
        outputs=list(architecture.get("output_modalities") or []),
        providers=len(model.endpoints),
        usable=model_usable(model, catalog),
        weekly_tokens=weekly.get(model.id, 0),
        created=info["created"],
    )


async def models_page(request: Request) -> Response:
    gateway = gateway_of(request)
    catalog = gateway.catalog
    choices = Choices.of(catalog)
    filters, problems = parse_filters(request.query_params, choices)
    popularity = gateway.rollups.popularity()
    found = filtered_models(catalog, filters.api_query())
    if filters.usable:
        found = [m for m in found if model_usable(m, catalog)]
    found = sorted_models(found, SORTS[filters.sort][1], gateway.stats, popularity)
    total = len(found)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(filters.page, pages)
    shown = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    return render(
        request,
        "models.html",
        status_code=400 if problems else 200,
        filters=filters,
        problems=problems,
        choices=choices,
        sorts=[(name, label) for name, (label, _) in SORTS.items()],
        context_choices=sorted({*CONTEXT_CHOICES, *([filters.context] if filters.context else [])}),
        rows=[model_row(m, catalog, popularity.recent) for m in shown],
        total=total,
        all_models=len(catalog.models),
        page=page,
        pages=pages,
        previous_url=filters.url(page=page - 1) if page > 1 else None,
        next_url=filters.url(page=page + 1) if page < pages else None,
        first_shown=(page - 1) * PAGE_SIZE + 1 if shown else 0,
        last_shown=(page - 1) * PAGE_SIZE + len(shown),
        recent_days=popularity.recent_days,
    )
