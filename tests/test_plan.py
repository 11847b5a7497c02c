"""The routing plan in memory: candidate filters, ordering and `plan_request`, no server.

Catalog used here (prices USD per million tokens, prompt/completion):
- acme/trio: alpha 1/1 fp8 ctx 4096 (zdr), beta 2/2 bf16 ctx 32768 no temperature (trains),
  gamma 3/3 mxfp4 ctx 131072 no tools / response_format (retains prompts)
- acme/backup: delta 5/5, no declared data policy
- acme/mixed: cheap 1/1 and pricey 10/10; acme/mixed:free: cheap 0/0
- acme/locked: a provider with a config problem; acme/empty: no endpoints
- acme/painter: outputs images only
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.providers.reasoning import resolve_reasoning
from crossroads.routing.candidates import eligible_endpoints
from crossroads.routing.ordering import Admission, order_endpoints
from crossroads.routing.plan import MAX_ATTEMPTS, MAX_MODELS, Plan, plan_request
from crossroads.schema.catalog import DataPolicy, Endpoint, ModelSpec, Provider
from crossroads.schema.chat import ProviderPreferences, parse_chat_request, request_parameters
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.sample import AttemptSample, Verdict
from crossroads.telemetry.stats import LiveStats

ALL_PARAMS = [
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
LONG_PROMPT = "word " * 4000  # about 5,000 tokens: more than alpha's 4,096 context


def reasons(body: dict[str, Any]) -> bool:
    """Whether `body` asks the model to reason, as the inference service resolves it."""
    spec = resolve_reasoning(body)
    return spec is not None and spec.enabled


def provider(slug: str, policy: DataPolicy | None = None, problem: str | None = None) -> Provider:
    return Provider(
        slug=slug,
        name=slug.capitalize(),
        api="openai",
        base_url="http://127.0.0.1:9/v1",
        data_policy=policy,
        config_problem=problem,
    )


def ep(name: str, prompt: float, completion: float, **fields: Any) -> Endpoint:
    """An endpoint of provider `name` (or tag `name` = 'provider/variant'), prices per M tokens."""
    pricing = {
        "prompt": f"{prompt / 1e6:.10f}",
        "completion": f"{completion / 1e6:.10f}",
        **fields.pop("pricing", {}),
    }
    return Endpoint(provider=name.split("/")[0], tag=name, pricing=pricing, **fields)


def build_catalog() -> Catalog:
    providers = {
        p.slug: p
        for p in [
            provider("alpha", DataPolicy(training=False, retains_prompts=False)),
            provider("beta", DataPolicy(training=True, retains_prompts=True)),
            provider("gamma", DataPolicy(training=False, retains_prompts=True)),
            provider("delta"),
            provider("cheap"),
            provider("pricey"),
            provider("locked", problem="missing credentials: set LOCKED_KEY"),
        ]
    }
    specs = {
        "acme/trio": [
            ep(
                "alpha",
                1,
                1,
                quantization="fp8",
                context_length=4096,
                max_completion_tokens=1024,
                supported_parameters=ALL_PARAMS,
            ),
            ep(
                "beta",
                2,
                2,
                quantization="bf16",
                context_length=32768,
                max_completion_tokens=8192,
                supported_parameters=[p for p in ALL_PARAMS if p != "temperature"],
            ),
            ep(
                "gamma",
                3,
                3,
                quantization="mxfp4",
                context_length=131072,
                max_completion_tokens=16384,
                supported_parameters=["max_tokens", "temperature", "stop"],
            ),
        ],
        "acme/backup": [ep("delta", 5, 5)],
        "acme/mixed": [ep("pricey", 10, 10), ep("cheap", 1, 1)],
        "acme/mixed:free": [ep("cheap", 0, 0)],
        "acme/locked": [ep("locked", 1, 1)],
        "acme/empty": [],
        "acme/painter": [ep("alpha", 1, 1)],
    }
    models = {}
    for model_id, endpoints in specs.items():
        arch = {"output_modalities": ["image"]} if model_id == "acme/painter" else None
        spec = ModelSpec(id=model_id, architecture=arch, endpoints=endpoints)
        models[model_id] = Model.build(spec, providers, created=0)
    return Catalog(providers=providers, models=models)


@pytest.fixture
def catalog() -> Catalog:
    return build_catalog()


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stats(clock: Clock) -> LiveStats:
    return LiveStats(instance="test", clock=clock)


@pytest.fixture
def circuits(clock: Clock) -> Circuits:
    return Circuits(clock=clock, failures=3, cooldown=5.0, max_cooldown=60.0)


def make_plan(
    catalog: Catalog,
    stats: LiveStats | None = None,
    seed: int = 0,
    content: str = "hello",
    circuits: Circuits | None = None,
    **body: Any,
) -> Plan:
    body = {"model": "acme/trio", "messages": [{"role": "user", "content": content}], **body}
    return plan_request(
        parse_chat_request(body),
        body,
        catalog,
        stats or LiveStats(instance="test"),
        random.Random(seed),
        circuits=circuits or Circuits(),
        reasoning=reasons(body),
    )


def tags(
    catalog: Catalog,
    stats: LiveStats | None = None,
    seed: int = 0,
    circuits: Circuits | None = None,
    **body: Any,
) -> list[str]:
    return [e.tag for e in make_plan(catalog, stats, seed, circuits=circuits, **body).endpoints]


def failure(catalog: Catalog, **body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        make_plan(catalog, **body)
    return info.value


def availability(error: GatewayError) -> dict:
    return error.metadata["availability"]


def warm(
    stats: LiveStats, figures: dict[str, tuple[float, float]], model: str = "acme/trio"
) -> None:
    """Live figures per tag: (latency ms, throughput tokens/s)."""
    for tag, (latency, throughput) in figures.items():
        for _ in range(3):
            stats.observe(
                AttemptSample(
                    endpoint_id=f"{model}@{tag}",
                    provider=tag,
                    model=model,
                    verdict=Verdict.OK,
                    latency_ms=latency,
                    throughput=throughput,
                )
            )


def observe(circuits: Circuits, tag: str, verdict: Verdict, times: int = 1) -> None:
    for _ in range(times):
        circuits.observe(
            AttemptSample(
                endpoint_id=f"acme/trio@{tag}", provider=tag, model="acme/trio", verdict=verdict
            )
        )


def trip(circuits: Circuits, *names: str) -> None:
    """Three failed attempts in a row: each endpoint's circuit opens (for 5 s)."""
    for tag in names:
        observe(circuits, tag, Verdict.FAILED, 3)


# --- the default price-weighted draw ---------------------------------------------------------


def test_draw_is_deterministic_with_a_seed_and_the_rest_follow_by_price(catalog: Catalog) -> None:
    for seed in range(30):
        order = tags(catalog, seed=seed)
        assert order == tags(catalog, seed=seed)
        assert sorted(order) == ["alpha", "beta", "gamma"]
        rest = order[1:]
        assert rest == sorted(rest)  # alphabetical is price order here
    assert len({tags(catalog, seed=s)[0] for s in range(200)}) == 3  # the first really is drawn


def test_draw_favours_cheaper_endpoints(catalog: Catalog) -> None:
    firsts = Counter(tags(catalog, seed=s)[0] for s in range(2000))
    assert firsts["alpha"] > firsts["beta"] > firsts["gamma"] > 0  # 36 : 9 : 4 expected
    assert firsts["alpha"] / firsts["gamma"] == pytest.approx(9, rel=0.35)


def test_draw_over_two_prices(catalog: Catalog) -> None:
    firsts = Counter(tags(catalog, seed=s, model="acme/mixed")[0] for s in range(500))
    assert firsts["cheap"] > 0.95 * 500  # 10x cheaper: 100x the weight


# --- variants --------------------------------------------------------------------------------


def test_nitro_sorts_by_throughput_unmeasured_last(catalog: Catalog, stats: LiveStats) -> None:
    warm(stats, {"alpha": (100, 10), "gamma": (100, 80)})
    for seed in range(10):
        assert tags(catalog, stats, seed, model="acme/trio:nitro") == ["gamma", "alpha", "beta"]
    plan = make_plan(catalog, stats, model="acme/trio:nitro")
    assert plan.requested == ["acme/trio:nitro"] and {e.model_id for e in plan.endpoints} == {
        "acme/trio"
    }


def test_floor_sorts_by_price(catalog: Catalog) -> None:
    assert {tuple(tags(catalog, seed=s, model="acme/trio:floor")) for s in range(20)} == {
        ("alpha", "beta", "gamma")
    }
    assert {tuple(tags(catalog, seed=s, model="ACME/Trio:floor")) for s in range(5)} == {
        ("alpha", "beta", "gamma")
    }


def test_free_is_a_model_of_its_own_not_a_variant(catalog: Catalog) -> None:
    plan = make_plan(catalog, model="acme/mixed:free")
    assert [(e.model_id, e.tag, e.upstream_model) for e in plan.endpoints] == [
        ("acme/mixed:free", "cheap", "acme/mixed")
    ]
    assert availability(failure(catalog, model="acme/trio:free"))["code"] == "model_not_found"
    assert failure(catalog, model="acme/trio:turbo").status == 404


def test_free_endpoint_is_the_overwhelming_favourite(catalog: Catalog, stats: LiveStats) -> None:
    free = catalog.models["acme/mixed:free"].endpoints[0]
    paid = catalog.models["acme/mixed"].endpoints
    prefs = ProviderPreferences()
    firsts = Counter(
        order_endpoints(
            [*paid, free], prefs, None, stats, random.Random(s), catalog, admission=Admission(None)
        )[0].id
        for s in range(300)
    )
    assert firsts == {free.id: 300}


# --- provider.order, allow_fallbacks, only / ignore -----------------------------------------


def test_order_then_the_rest_by_price(catalog: Catalog) -> None:
    for seed in range(5):
        assert tags(catalog, seed=seed, provider={"order": ["gamma", "beta"]}) == [
            "gamma",
            "beta",
            "alpha",
        ]
    assert tags(catalog, provider={"order": ["Gamma", "nobody"]}) == ["gamma", "alpha", "beta"]


def test_order_rest_follows_sort(catalog: Catalog, stats: LiveStats) -> None:
    warm(stats, {"alpha": (100, 10), "gamma": (100, 80)})
    assert tags(catalog, stats, provider={"order": ["beta"], "sort": "throughput"}) == [
        "beta",
        "gamma",
        "alpha",
    ]


def test_allow_fallbacks_false(catalog: Catalog) -> None:
    no_fallbacks = {"order": ["gamma", "beta"], "allow_fallbacks": False}
    assert tags(catalog, provider=no_fallbacks) == ["gamma", "beta"]
    assert tags(catalog, provider={"order": ["gamma"], "allow_fallbacks": True}) == [
        "gamma",
        "alpha",
        "beta",
    ]
    # without an order only the first choice is tried
    assert tags(catalog, provider={"sort": "price", "allow_fallbacks": False}) == ["alpha"]
    assert len(tags(catalog, seed=3, provider={"allow_fallbacks": False})) == 1


def test_only_and_ignore(catalog: Catalog) -> None:
    assert tags(catalog, provider={"only": ["gamma"]}) == ["gamma"]
    assert tags(catalog, provider={"only": ["Beta"]}) == ["beta"]  # display name, any case
    assert tags(catalog, provider={"ignore": ["alpha", "beta"]}) == ["gamma"]
    assert sorted(tags(catalog, provider={"only": ["alpha", "beta"], "ignore": ["beta"]})) == [
        "alpha"
    ]
    error = failure(catalog, provider={"only": ["nobody"]})
    assert error.status == 404 and availability(error)["excluded_by"] == ["allowed_providers"]
    assert availability(error)["constraint"] == {"field": "allowed_providers"}
    error = failure(catalog, provider={"ignore": ["alpha", "beta", "gamma"]})
    assert availability(error)["excluded_by"] == ["ignored_providers"]


def test_a_base_slug_matches_every_tag_of_a_provider(catalog: Catalog) -> None:
    model = Model.build(
        ModelSpec(id="acme/tags", endpoints=[ep("alpha", 2, 2), ep("alpha/turbo", 1, 1)]),
        catalog.providers,
        created=0,
    )
    catalog.add(model)
    assert sorted(tags(catalog, model="acme/tags", provider={"only": ["alpha"]})) == [
        "alpha",
        "alpha/turbo",
    ]
    assert tags(catalog, model="acme/tags", provider={"only": ["alpha/turbo"]}) == ["alpha/turbo"]


# --- sort ------------------------------------------------------------------------------------


def test_sort_by_price_throughput_latency(catalog: Catalog, stats: LiveStats) -> None:
    warm(stats, {"alpha": (150, 10), "beta": (40, 30), "gamma": (60, 5)})
    assert tags(catalog, stats, provider={"sort": "price"}) == ["alpha", "beta", "gamma"]
    assert tags(catalog, stats, provider={"sort": "throughput"}) == ["beta", "alpha", "gamma"]
    assert tags(catalog, stats, provider={"sort": "latency"}) == ["beta", "gamma", "alpha"]
    assert tags(catalog, stats, provider={"sort": {"by": "latency"}}) == ["beta", "gamma", "alpha"]
    # an explicit sort wins over the variant
    assert tags(catalog, stats, model="acme/trio:nitro", provider={"sort": "price"}) == [
        "alpha",
        "beta",
        "gamma",
    ]


def test_sort_without_live_figures_falls_back_to_price(catalog: Catalog, stats: LiveStats) -> None:
    assert tags(catalog, stats, provider={"sort": "latency"}) == ["alpha", "beta", "gamma"]
    warm(stats, {"gamma": (500, 1)})
    assert tags(catalog, stats, provider={"sort": "latency"}) == ["gamma", "alpha", "beta"]


def test_preferred_thresholds_move_never_remove(catalog: Catalog, stats: LiveStats) -> None:
    warm(stats, {"alpha": (150, 10), "beta": (40, 30), "gamma": (60, 5)})
    assert tags(catalog, stats, provider={"sort": "price", "preferred_max_latency": 0.1}) == [
        "beta",
        "gamma",
        "alpha",
    ]
    assert tags(catalog, stats, provider={"sort": "price", "preferred_min_throughput": 20}) == [
        "beta",
        "alpha",
        "gamma",
    ]
    assert tags(catalog, stats, provider={"sort": "price", "preferred_min_throughput": 1e6}) == [
        "alpha",
        "beta",
        "gamma",
    ]


# --- hard filters ----------------------------------------------------------------------------


def test_max_price_per_million_tokens(catalog: Catalog) -> None:
    assert tags(catalog, provider={"max_price": {"prompt": 1.5, "completion": "1.5"}}) == ["alpha"]
    assert tags(
        catalog, provider={"max_price": {"prompt": 2, "completion": 2}, "sort": "price"}
    ) == ["alpha", "beta"]
    error = failure(catalog, provider={"max_price": {"prompt": 0.5}})
    assert error.status == 404 and availability(error)["code"] == "constraint_filtered"
    assert availability(error)["constraint"] == {"field": "max_price"}
    assert failure(catalog, provider={"max_price": {"prompt": "cheap"}}).status == 400


def test_max_price_per_request_is_not_scaled(catalog: Catalog) -> None:
    model = Model.build(
        ModelSpec(
            id="acme/fee",
            endpoints=[ep("alpha", 1, 1, pricing={"request": "0.01"}), ep("beta", 2, 2)],
        ),
        catalog.providers,
        created=0,
    )
    catalog.add(model)
    assert tags(catalog, model="acme/fee", provider={"max_price": {"request": 0.005}}) == ["beta"]
    assert len(tags(catalog, model="acme/fee", provider={"max_price": {"request": 0.01}})) == 2


def test_quantizations(catalog: Catalog) -> None:
    assert tags(catalog, provider={"quantizations": ["fp4"]}) == ["gamma"]  # fp4 includes mxfp4
    assert tags(catalog, provider={"quantizations": ["FP8"]}) == ["alpha"]
    assert tags(catalog, provider={"quantizations": ["bf16", "fp8"], "sort": "price"}) == [
        "alpha",
        "beta",
    ]
    assert tags(catalog, model="acme/backup", provider={"quantizations": ["unknown"]}) == [
        "delta"
    ]  # none declared
    error = failure(catalog, provider={"quantizations": ["int4"]})
    assert (
        availability(error)["constraint"] == {"field": "quantization"}
        and "quantization" in error.message
    )


def test_data_collection_deny_and_zdr(catalog: Catalog) -> None:
    assert tags(catalog, provider={"data_collection": "deny"}) == [
        "alpha"
    ]  # beta trains, gamma retains
    assert sorted(tags(catalog, provider={"data_collection": "allow"})) == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert tags(catalog, provider={"zdr": True}) == ["alpha"]
    error = failure(
        catalog, model="acme/backup", provider={"zdr": True}
    )  # no declared policy: no promise
    assert error.status == 404 and availability(error)["excluded_by"] == ["data_policy:zdr"]
    error = failure(catalog, model="acme/backup", provider={"data_collection": "deny"})
    assert availability(error)["excluded_by"] == ["data_policy:training"]


def test_context_length_by_prompt_size_and_max_tokens(catalog: Catalog) -> None:
    plan = make_plan(catalog, content=LONG_PROMPT, provider={"sort": "price"})
    assert [e.tag for e in plan.endpoints] == ["beta", "gamma"] and 4096 < plan.prompt_tokens < 6000
    assert tags(catalog, provider={"sort": "price"}, max_tokens=2000) == [
        "beta",
        "gamma",
    ]  # alpha writes <= 1024
    assert tags(catalog, provider={"sort": "price"}, max_completion_tokens=10_000) == ["gamma"]
    error = failure(catalog, content=LONG_PROMPT, provider={"only": ["alpha"]})
    assert error.status == 400 and error.error_type == "context_length_exceeded"
    assert availability(error)["excluded_by"] == ["allowed_providers", "context_length"]
    error = failure(catalog, max_tokens=100_000)
    assert error.status == 400 and "max_tokens" in error.message


def test_max_prompt_tokens(catalog: Catalog) -> None:
    model = Model.build(
        ModelSpec(
            id="acme/short",
            context_length=100_000,
            endpoints=[ep("alpha", 1, 1, max_prompt_tokens=1000), ep("beta", 2, 2)],
        ),
        catalog.providers,
        created=0,
    )
    catalog.add(model)
    assert tags(catalog, model="acme/short", content=LONG_PROMPT) == ["beta"]


def test_require_parameters(catalog: Catalog) -> None:
    # beta does not take temperature: dropped without require_parameters, excluded with it
    assert tags(catalog, provider={"only": ["beta"]}, temperature=0.3) == ["beta"]
    required = {"require_parameters": True, "sort": "price"}
    assert tags(catalog, provider=required, temperature=0.3) == ["alpha", "gamma"]
    error = failure(
        catalog, temperature=0.3, provider={"only": ["beta"], "require_parameters": True}
    )
    assert availability(error)["constraint"] == {"field": "require_parameters"}
    assert availability(error)["excluded_by"] == ["allowed_providers", "require_parameters"]
    # max_completion_tokens is served by max_tokens; supported_parameters None takes anything
    assert tags(catalog, provider=required, max_completion_tokens=5) == ["alpha", "beta", "gamma"]
    assert tags(catalog, model="acme/backup", provider=required, top_a=0.5) == ["delta"]


def test_response_format_counts_structured_outputs(catalog: Catalog) -> None:
    structured = ep("beta", 1, 1, supported_parameters=["structured_outputs"])
    catalog.add(
        Model.build(ModelSpec(id="acme/json", endpoints=[structured]), catalog.providers, created=0)
    )
    assert tags(
        catalog,
        model="acme/json",
        provider={"require_parameters": True},
        response_format={"type": "json_object"},
    ) == ["beta"]


def test_soft_parameter_preferences(catalog: Catalog) -> None:
    assert tags(catalog, provider={"order": ["gamma", "beta"]}) == ["gamma", "beta", "alpha"]
    # today an endpoint without tools / response_format is left out when others support them
    assert tags(catalog, provider={"order": ["gamma", "beta"]}, tools=TOOLS) == ["beta", "alpha"]
    json_mode = {"type": "json_object"}
    assert tags(catalog, provider={"order": ["gamma", "beta"]}, response_format=json_mode) == [
        "beta",
        "alpha",
    ]
    # ...but a preference never empties the list
    assert tags(catalog, provider={"only": ["gamma"]}, response_format=json_mode) == ["gamma"]


def add_thinker(catalog: Catalog) -> None:
    """acme/thinker: alpha 5/5 lists `reasoning`, beta 1/1 does not, gamma 3/3 lists
    `include_reasoning` only."""
    endpoints = [
        ep("alpha", 5, 5, supported_parameters=["max_tokens", "tools", "reasoning"]),
        ep("beta", 1, 1, supported_parameters=["max_tokens", "tools", "temperature"]),
        ep("gamma", 3, 3, supported_parameters=["max_tokens", "include_reasoning"]),
    ]
    spec = ModelSpec(id="acme/thinker", endpoints=endpoints)
    catalog.add(Model.build(spec, catalog.providers, created=0))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ["beta", "gamma", "alpha"]),
        ({"reasoning": {"effort": "high"}}, ["gamma", "alpha"]),
        ({"reasoning": {"max_tokens": 100}}, ["gamma", "alpha"]),
        ({"reasoning": {"enabled": True}}, ["gamma", "alpha"]),
        ({"reasoning": {"exclude": True}}, ["gamma", "alpha"]),
        ({"reasoning_effort": "low"}, ["gamma", "alpha"]),
        ({"include_reasoning": True}, ["gamma", "alpha"]),
        ({"reasoning": {}}, ["beta", "gamma", "alpha"]),
        ({"reasoning": {"enabled": False}}, ["beta", "gamma", "alpha"]),
        ({"reasoning": {"effort": "none"}}, ["beta", "gamma", "alpha"]),
        ({"reasoning_effort": "none"}, ["beta", "gamma", "alpha"]),
    ],
)
def test_reasoning_prefers_endpoints_that_list_it(
    catalog: Catalog, fields: dict[str, Any], expected: list[str]
) -> None:
    add_thinker(catalog)
    body = {"model": "acme/thinker", "provider": {"sort": "price"}, **fields}
    assert tags(catalog, **body) == expected
    assert reasons(fields) is (expected != ["beta", "gamma", "alpha"])


def test_reasoning_comes_after_tools_and_never_empties_the_list(catalog: Catalog) -> None:
    add_thinker(catalog)
    by_price = {"sort": "price"}
    reasoning = {"effort": "high"}
    # tools first (gamma cannot call them), then reasoning among those left
    assert tags(catalog, model="acme/thinker", provider=by_price, tools=TOOLS) == ["beta", "alpha"]
    assert tags(
        catalog, model="acme/thinker", provider=by_price, tools=TOOLS, reasoning=reasoning
    ) == ["alpha"]
    # only beta left, which cannot reason: it still serves, the preference drops nothing
    only_beta = {"only": ["beta"]}
    assert tags(catalog, model="acme/thinker", provider=only_beta, reasoning=reasoning) == ["beta"]
    # the trio's endpoints list no reasoning at all: the request is routed as before
    assert sorted(tags(catalog, reasoning=reasoning)) == ["alpha", "beta", "gamma"]


def test_require_parameters_treats_reasoning_fields_as_one_family(catalog: Catalog) -> None:
    add_thinker(catalog)
    required = {"sort": "price", "require_parameters": True}
    for fields in (
        {"reasoning_effort": "high"},
        {"reasoning": {"effort": "low"}},
        {"include_reasoning": True},
    ):
        assert tags(catalog, model="acme/thinker", provider=required, **fields) == [
            "gamma",
            "alpha",
        ]


def test_eligible_endpoints_directly(catalog: Catalog) -> None:
    body = {
        "model": "acme/trio",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": TOOLS,
        "provider": {"ignore": ["alpha"]},
    }
    request, parameters = parse_chat_request(body), request_parameters(body)
    model = catalog.models["acme/trio"]
    kept = eligible_endpoints(model, request, parameters, 10, catalog, reasoning=False)
    assert [e.tag for e in kept] == ["beta"]


# --- models, unknown models, nothing left ----------------------------------------------------


def test_models_fallback_list_keeps_request_order(catalog: Catalog) -> None:
    plan = make_plan(
        catalog,
        model="acme/backup",
        models=["acme/trio", "acme/backup"],
        provider={"sort": "price"},
    )
    assert plan.requested == ["acme/backup", "acme/trio"]
    assert [e.id for e in plan.endpoints] == [
        "acme/backup@delta",
        "acme/trio@alpha",
        "acme/trio@beta",
        "acme/trio@gamma",
    ]
    plan = make_plan(catalog, model=None, models=["nope/model", "acme/backup"])
    assert plan.requested == ["nope/model", "acme/backup"] and [e.id for e in plan.endpoints] == [
        "acme/backup@delta"
    ]
    # a model whose filters leave nothing is skipped for the next one
    plan = make_plan(catalog, model="acme/backup", models=["acme/trio"], provider={"zdr": True})
    assert [e.id for e in plan.endpoints] == ["acme/trio@alpha"]


def test_models_take_at_most_three_fallbacks_each_tried_once(catalog: Catalog) -> None:
    error = failure(catalog, models=["acme/trio", "acme/backup", "acme/mixed", "acme/open"])
    assert error.status == 400 and f"at most {MAX_MODELS}" in error.message
    # fifty copies are refused before anything is resolved, not tried fifty times
    assert failure(catalog, models=["acme/backup"] * 50).status == 400
    plan = make_plan(catalog, model="acme/backup", models=["acme/backup", "acme/trio", "acme/trio"])
    assert plan.requested == ["acme/backup", "acme/trio"]
    assert [e.id for e in plan.endpoints].count("acme/backup@delta") == 1
    assert len(plan.endpoints) == 4


def test_a_plan_holds_at_most_max_attempts_endpoints(catalog: Catalog) -> None:
    wide = []
    for i in range(MAX_ATTEMPTS + 2):
        catalog.providers[f"p{i:02}"] = provider(f"p{i:02}")
        wide.append(ep(f"p{i:02}", 1 + i, 1 + i))
    catalog.add(
        Model.build(ModelSpec(id="acme/wide", endpoints=wide), catalog.providers, created=0)
    )
    order = tags(catalog, model="acme/wide", provider={"sort": "price"})
    assert order == [f"p{i:02}" for i in range(MAX_ATTEMPTS)]  # the cheapest ten
    across = make_plan(
        catalog,
        model="acme/trio",
        models=["acme/wide"],
        provider={"sort": "price"},
    )
    assert [e.id for e in across.endpoints] == [
        "acme/trio@alpha",
        "acme/trio@beta",
        "acme/trio@gamma",
        *(f"acme/wide@p{i:02}" for i in range(MAX_ATTEMPTS - 3)),
    ]


def test_partition_none_sorts_across_models(catalog: Catalog) -> None:
    body = {"model": "acme/backup", "models": ["acme/trio"]}
    by_price = ["acme/trio@alpha", "acme/trio@beta", "acme/trio@gamma", "acme/backup@delta"]
    plan = make_plan(catalog, provider={"sort": {"by": "price", "partition": "none"}}, **body)
    assert [e.id for e in plan.endpoints] == by_price
    for seed in range(5):  # no sort given: price, never a draw mixing models
        assert [
            e.id for e in make_plan(catalog, seed=seed, route="sort", **body).endpoints
        ] == by_price


def test_unknown_and_unusable_models(catalog: Catalog) -> None:
    error = failure(catalog, model="nope/model")
    assert error.status == 404 and availability(error) == {
        "code": "model_not_found",
        "retryable": False,
        "requested_models": ["nope/model"],
    }
    assert failure(catalog, model=None, models=["nope/a", "nope/b"]).metadata["availability"][
        "requested_models"
    ] == ["nope/b"]  # the last model's error is the one raised
    assert failure(catalog, model=None).status == 400
    assert failure(catalog, model="acme/painter").status == 400
    error = failure(catalog, model="acme/locked")
    assert error.status == 404 and availability(error)["code"] == "no_endpoints"
    assert (
        availability(error)["excluded_by"] == ["unavailable"]
        and "missing credentials" in error.message
    )
    error = failure(catalog, model="acme/empty")
    assert (
        availability(error)["code"] == "no_endpoints" and availability(error)["excluded_by"] == []
    )


def test_excluded_by_lists_every_filter_that_removed_something(catalog: Catalog) -> None:
    error = failure(
        catalog,
        provider={
            "ignore": ["gamma"],
            "quantizations": ["fp8", "bf16"],
            "zdr": True,
            "max_price": {"prompt": 0.5},
        },
    )
    assert availability(error)["excluded_by"] == [
        "ignored_providers",
        "data_policy:zdr",
        "max_price",
    ]
    assert availability(error)["constraint"] == {"field": "max_price"}


# --- circuits ---------------------------------------------------------------------------------


def test_an_open_endpoint_moves_behind_healthy_ones_in_the_draw(
    catalog: Catalog, circuits: Circuits, clock: Clock
) -> None:
    trip(circuits, "alpha")
    orders = [tags(catalog, seed=s, circuits=circuits) for s in range(100)]
    assert all(order[-1] == "alpha" for order in orders)
    assert {order[0] for order in orders} == {"beta", "gamma"}  # drawn among the admitted
    clock.now += 5  # the cooldown is over: alpha is half-open
    assert tags(catalog, seed=1, circuits=circuits) == ["alpha", "beta", "gamma"]  # the probe
    assert all(tags(catalog, seed=s, circuits=circuits)[-1] == "alpha" for s in range(20))
    observe(circuits, "alpha", Verdict.OK)  # the probe answered: closed
    firsts = Counter(tags(catalog, seed=s, circuits=circuits)[0] for s in range(100))
    assert firsts["alpha"] > 50


def test_a_probe_that_fails_holds_the_endpoint_back_longer(
    catalog: Catalog, circuits: Circuits, clock: Clock
) -> None:
    trip(circuits, "alpha")
    clock.now += 5
    assert tags(catalog, circuits=circuits)[0] == "alpha"
    observe(circuits, "alpha", Verdict.FAILED)  # 10 s now
    clock.now += 9.5
    assert {tags(catalog, seed=s, circuits=circuits)[-1] for s in range(20)} == {"alpha"}
    clock.now += 0.5
    assert tags(catalog, seed=7, circuits=circuits)[0] == "alpha"


def test_an_open_endpoint_moves_last_under_sort_and_variants(
    catalog: Catalog, stats: LiveStats, circuits: Circuits
) -> None:
    warm(stats, {"alpha": (40, 80), "beta": (150, 10), "gamma": (60, 5)})
    trip(circuits, "alpha")

    def plan(**body: Any) -> list[str]:
        return tags(catalog, stats, circuits=circuits, **body)

    assert plan(provider={"sort": "price"}) == ["beta", "gamma", "alpha"]
    assert plan(provider={"sort": "latency"}) == ["gamma", "beta", "alpha"]
    assert plan(provider={"sort": "throughput"}) == ["beta", "gamma", "alpha"]
    assert plan(model="acme/trio:nitro") == ["beta", "gamma", "alpha"]
    assert plan(model="acme/trio:floor") == ["beta", "gamma", "alpha"]
    # thresholds order each group; held-back endpoints stay behind
    assert plan(provider={"sort": "price", "preferred_max_latency": 0.1}) == [
        "gamma",
        "beta",
        "alpha",
    ]
    # without fallbacks (and without order) the first after the circuits is the one tried
    assert plan(provider={"sort": "price", "allow_fallbacks": False}) == ["beta"]
    assert {plan(seed=s, provider={"allow_fallbacks": False})[0] for s in range(30)} <= {
        "beta",
        "gamma",
    }


def test_an_open_endpoint_moves_last_under_order(catalog: Catalog, circuits: Circuits) -> None:
    trip(circuits, "gamma")
    assert tags(catalog, circuits=circuits, provider={"order": ["gamma", "beta"]}) == [
        "beta",
        "alpha",
        "gamma",
    ]
    no_fallbacks = {"order": ["gamma", "beta"], "allow_fallbacks": False}
    assert tags(catalog, circuits=circuits, provider=no_fallbacks) == ["beta", "gamma"]
    # the only endpoint allowed is still tried, open or not
    only = {"order": ["gamma"], "allow_fallbacks": False}
    assert tags(catalog, circuits=circuits, provider=only) == ["gamma"]


def test_all_open_are_still_tried_by_price(
    catalog: Catalog, stats: LiveStats, circuits: Circuits
) -> None:
    trip(circuits, "alpha", "beta", "gamma")
    orders = {tuple(tags(catalog, seed=s, circuits=circuits)) for s in range(20)}
    assert orders == {("alpha", "beta", "gamma")}
    warm(stats, {"alpha": (150, 10), "beta": (40, 30), "gamma": (60, 5)})
    assert tags(catalog, stats, circuits=circuits, provider={"sort": "latency"}) == [
        "beta",
        "gamma",
        "alpha",
    ]
    observe(circuits, "gamma", Verdict.OK)  # gamma recovered: it alone is admitted
    assert {tags(catalog, seed=s, circuits=circuits)[0] for s in range(20)} == {"gamma"}
    assert tags(catalog, seed=3, circuits=circuits) == ["gamma", "alpha", "beta"]


def test_a_half_open_probe_is_admitted_once(
    catalog: Catalog, circuits: Circuits, clock: Clock
) -> None:
    trip(circuits, "beta")
    clock.now += 5
    sort = {"sort": "price"}
    assert tags(catalog, circuits=circuits, provider=sort) == ["alpha", "beta", "gamma"]
    assert tags(catalog, circuits=circuits, provider=sort) == ["alpha", "gamma", "beta"]
    clock.now += 10  # the probe never reported (alpha answered first): offered again
    assert tags(catalog, circuits=circuits, provider=sort) == ["alpha", "beta", "gamma"]
    assert tags(catalog, circuits=circuits, provider=sort) == ["alpha", "gamma", "beta"]


def test_each_circuit_is_asked_once_per_plan(catalog: Catalog, clock: Clock) -> None:
    asked: list[str] = []

    class Counting(Circuits):
        def admit(self, endpoint_id: str) -> bool:
            asked.append(endpoint_id)
            return super().admit(endpoint_id)

    circuits = Counting(clock=clock)
    trip(circuits, "alpha")
    clock.now += 5
    plan = make_plan(
        catalog, circuits=circuits, models=["acme/trio:floor", "acme/trio:nitro", "acme/trio"]
    )
    assert [e.tag for e in plan.endpoints] == ["alpha", "beta", "gamma"]  # alpha probes
    assert sorted(asked) == ["acme/trio@alpha", "acme/trio@beta", "acme/trio@gamma"]
    observe(circuits, "alpha", Verdict.OK)
    # a plan limited to one endpoint does not claim the probes of those it left out
    asked.clear()
    trip(circuits, "beta")
    clock.now += 5
    assert tags(
        catalog, circuits=circuits, provider={"order": ["gamma"], "allow_fallbacks": False}
    ) == ["gamma"]
    assert asked == ["acme/trio@gamma"]
    assert tags(catalog, circuits=circuits, provider={"sort": "price"}) == [
        "alpha",
        "beta",
        "gamma",
    ]


def test_provider_preferences_leaving_nothing_to_try_is_a_404(catalog: Catalog) -> None:
    error = failure(catalog, provider={"order": ["nobody"], "allow_fallbacks": False})
    assert error.status == 404 and error.error_type == "not_found"
    assert "provider constraints" in error.message
    assert availability(error)["code"] == "constraint_filtered"


def test_an_endpoint_reached_through_several_variants_is_tried_once(catalog: Catalog) -> None:
    plan = make_plan(catalog, models=["acme/trio:nitro", "acme/trio:floor"])
    ids = [e.id for e in plan.endpoints]
    assert sorted(ids) == ["acme/trio@alpha", "acme/trio@beta", "acme/trio@gamma"]
    first = make_plan(catalog).endpoints  # the first name's order is kept
    assert ids == [e.id for e in first]
