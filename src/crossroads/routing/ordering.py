"""In what order a request tries its endpoints: OpenRouter's documented rules, and circuits.

Default: the first endpoint is drawn with probability proportional to the inverse
square of its price among the endpoints their circuits admit; the other admitted
endpoints follow by price. `sort`, `order` and the `:nitro` / `:floor` variants replace
the draw with a fixed order; `preferred_*` thresholds move endpoints to the end of their
group, never remove them.

Circuits (`telemetry.circuit`): in every mode, the endpoints whose circuit does not
admit them now (open, or half-open with a probe already on its way) go behind every
admitted one, each group keeping the mode's order; so they are still tried, last (by
price in the default mode, where no draw is made among them). Each endpoint's circuit is
asked once per plan (`Admission`), as asking claims a half-open endpoint's single probe;
a probe claimed by a plan that never reaches it is offered again after the circuit's
probe timeout. In the draw, an admitted probe goes first: the draw is the gateway's own
choice, and a recovered endpoint gets its traffic back at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from decimal import Decimal

from crossroads.catalog import Catalog
from crossroads.routing.candidates import provider_matches
from crossroads.schema.catalog import Endpoint
from crossroads.schema.chat import Percentiles, ProviderPreferences, SortSpec
from crossroads.telemetry.circuit import Circuits, CircuitState
from crossroads.telemetry.stats import PERFORMANCE_WINDOW, PREFERENCE_WINDOW, LiveStats

# Free endpoints would get an infinite weight; this floor (USD per token) keeps them the
# overwhelming but finite favourite, and makes equal-priced free endpoints equally likely.
_PRICE_FLOOR = 1e-10
_VARIANT_SORT = {"nitro": "throughput", "floor": "price"}

Figures = Mapping[str, float]  # live percentiles of one endpoint: {"p50": ..., "p99": ...}
Figure = Callable[[str], Figures | None]  # endpoint id -> its figures, e.g. LiveStats.latency


class Admission:
    """One plan's answers from the circuits: `Circuits.admit()` is asked at most once per
    endpoint (it claims half-open probes), lazily: endpoints filtered out before ordering
    are never asked."""

    __slots__ = ("_circuits", "_answers", "_probes")

    def __init__(self, circuits: Circuits | None) -> None:
        self._circuits = circuits
        self._answers: dict[str, bool] = {}
        self._probes: set[str] = set()

    def admitted(self, endpoint: Endpoint) -> bool:
        if self._circuits is None:
            return True
        answer = self._answers.get(endpoint.id)
        if answer is None:
            half_open = self._circuits.state(endpoint.id) is CircuitState.HALF_OPEN
            answer = self._answers[endpoint.id] = self._circuits.admit(endpoint.id)
            if answer and half_open:
                self._probes.add(endpoint.id)
        return answer

    def probing(self, endpoint: Endpoint) -> bool:
        """Admitted as its circuit's half-open probe (by an earlier `admitted()`)."""
        return endpoint.id in self._probes

    def split(self, endpoints: list[Endpoint]) -> tuple[list[Endpoint], list[Endpoint]]:
        """(admitted, held back), each in the given order."""
        admitted = [e for e in endpoints if self.admitted(e)]
        return admitted, [e for e in endpoints if not self.admitted(e)]


def sort_preference(prefs: ProviderPreferences, variant: str | None) -> str | None:
    sort = prefs.sort
    by = sort.by if isinstance(sort, SortSpec) else sort
    return by or _VARIANT_SORT.get(variant or "")


def _by_price(endpoints: list[Endpoint]) -> list[Endpoint]:
    return sorted(endpoints, key=Endpoint.blended_price)


def sort_endpoints(endpoints: list[Endpoint], by: str, stats: LiveStats) -> list[Endpoint]:
    """A deterministic order; endpoints without live figures follow those with, by price."""
    if by == "price":
        return _by_price(endpoints)

    def measured(figure: Figure, sign: float) -> Callable[[Endpoint], tuple[bool, float, Decimal]]:
        def key(e: Endpoint) -> tuple[bool, float, Decimal]:
            value = figure(e.id)
            return (value is None, sign * value["p50"] if value else 0.0, e.blended_price())

        return key

    if by == "throughput":
        return sorted(endpoints, key=measured(stats.throughput, -1.0))
    if by == "latency":
        return sorted(endpoints, key=measured(stats.latency, 1.0))
    # "exacto": quality first; the quality signal we measure is the recent success rate
    return sorted(
        endpoints,
        key=lambda e: (-(stats.uptime(e.id, PERFORMANCE_WINDOW) or 0.0), e.blended_price()),
    )


def load_balanced(
    endpoints: list[Endpoint], rng: random.Random, admission: Admission | None = None
) -> list[Endpoint]:
    """The price-weighted draw among admitted endpoints (an admitted probe goes first), the
    other admitted ones by price, then the held-back ones by price."""
    if admission is None:
        admission = Admission(None)
    healthy, held = admission.split(endpoints)
    if not healthy:
        return _by_price(held)
    probes = [e for e in healthy if admission.probing(e)]
    if probes:
        first = _by_price(probes)[0]
    else:
        weights = [1.0 / max(float(e.blended_price()), _PRICE_FLOOR) ** 2 for e in healthy]
        first = rng.choices(healthy, weights=weights)[0]
    return [first, *_by_price([e for e in healthy if e is not first]), *_by_price(held)]


def _meets(
    figures: Figures | None, wanted: float | Percentiles, *, at_least: bool, scale: float
) -> bool:
    thresholds = (
        {"p50": wanted}
        if isinstance(wanted, (int, float))
        else {
            k: getattr(wanted, k)
            for k in ("p50", "p75", "p90", "p99")
            if getattr(wanted, k) is not None
        }
    )
    if figures is None:
        return False
    for name, limit in thresholds.items():
        value = figures[name] * scale
        if (value < limit) if at_least else (value > limit):
            return False
    return True


def prefer_performance(
    endpoints: list[Endpoint], prefs: ProviderPreferences, stats: LiveStats
) -> list[Endpoint]:
    """Endpoints that miss `preferred_min_throughput` / `preferred_max_latency` move last."""
    if prefs.preferred_min_throughput is None and prefs.preferred_max_latency is None:
        return endpoints

    def preferred(e: Endpoint) -> bool:
        if prefs.preferred_min_throughput is not None and not _meets(
            stats.throughput(e.id, PREFERENCE_WINDOW),
            prefs.preferred_min_throughput,
            at_least=True,
            scale=1.0,
        ):
            return False
        # latency is measured in milliseconds; the preference is in seconds
        return prefs.preferred_max_latency is None or _meets(
            stats.latency(e.id, PREFERENCE_WINDOW),
            prefs.preferred_max_latency,
            at_least=False,
            scale=0.001,
        )

    good = [e for e in endpoints if preferred(e)]
    return good + [e for e in endpoints if e not in good]


def order_endpoints(
    endpoints: list[Endpoint],
    prefs: ProviderPreferences,
    variant: str | None,
    stats: LiveStats,
    rng: random.Random,
    catalog: Catalog,
    *,
    admission: Admission,
) -> list[Endpoint]:
    """The endpoints of one group (a model, or every model when sorted across models) in
    the order to try them; `allow_fallbacks: false` without `order` keeps only the first."""
    by = sort_preference(prefs, variant)
    if prefs.order:
        listed: list[Endpoint] = []
        for name in prefs.order:
            listed += [
                e for e in endpoints if e not in listed and provider_matches(e, name, catalog)
            ]
        rest = [] if prefs.allow_fallbacks is False else [e for e in endpoints if e not in listed]
        ordered = listed + sort_endpoints(rest, by or "price", stats)
    elif by:
        ordered = sort_endpoints(endpoints, by, stats)
    else:
        ordered = load_balanced(endpoints, rng, admission)
    healthy, held = admission.split(ordered)
    ordered = prefer_performance(healthy, prefs, stats) + prefer_performance(held, prefs, stats)
    if prefs.allow_fallbacks is False and not prefs.order:
        ordered = ordered[:1]
    return ordered
