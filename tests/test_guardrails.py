"""A key's guardrails: parsed from an API body, forced onto chat requests, and seen through
the real routing plan (no server).

Catalog used here (prices USD per million tokens, prompt/completion):
- acme/trio: alpha 1/1 (zero data retention), alpha/fast 2/2, beta 2/2 (trains on prompts),
  gamma 3/3 (retains prompts)
- acme/trio:free: alpha 0/0
- acme/backup: delta 5/5, no declared data policy
- acme/locked: a provider with a config problem
"""

from __future__ import annotations

import copy
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossroads.catalog import Catalog, Model
from crossroads.errors import GatewayError
from crossroads.limits.guardrails import (
    Guardrails,
    guard_body,
    guardrail_error,
    parse_guardrails,
)
from crossroads.providers.reasoning import resolve_reasoning
from crossroads.routing.plan import Plan, plan_request
from crossroads.schema.catalog import DataPolicy, Endpoint, ModelSpec, Provider
from crossroads.schema.chat import parse_chat_request
from crossroads.telemetry.circuit import Circuits
from crossroads.telemetry.stats import LiveStats

PROVIDERS = ("alpha", "beta", "gamma", "delta")
MESSAGES = [{"role": "user", "content": "hello"}]


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


def ep(tag: str, price: float) -> Endpoint:
    per_token = f"{price / 1e6:.10f}"
    return Endpoint(
        provider=tag.split("/")[0],
        tag=tag,
        pricing={"prompt": per_token, "completion": per_token},
        context_length=32768,
    )


def build_catalog() -> Catalog:
    providers = {
        p.slug: p
        for p in [
            provider("alpha", DataPolicy(training=False, retains_prompts=False)),
            provider("beta", DataPolicy(training=True, retains_prompts=True)),
            provider("gamma", DataPolicy(training=False, retains_prompts=True)),
            provider("delta"),
            provider("locked", problem="missing credentials: set LOCKED_KEY"),
        ]
    }
    specs = {
        "acme/trio": [ep("alpha", 1), ep("alpha/fast", 2), ep("beta", 2), ep("gamma", 3)],
        "acme/trio:free": [ep("alpha", 0)],
        "acme/backup": [ep("delta", 5)],
        "acme/locked": [ep("locked", 1)],
    }
    models = {
        model_id: Model.build(ModelSpec(id=model_id, endpoints=eps), providers, created=0)
        for model_id, eps in specs.items()
    }
    return Catalog(providers=providers, models=models)


CATALOG = build_catalog()  # read only: nothing here changes it


def rails(**fields: Any) -> Guardrails:
    parsed = parse_guardrails(fields)
    assert parsed is not None
    return parsed


def guard(r: Guardrails, **body: Any) -> dict[str, Any]:
    body = {"model": "acme/trio", "messages": MESSAGES, **body}
    parse_chat_request(body)  # guard_body takes validated requests
    return guard_body(r, body, resolve=CATALOG.canonical_id)


def refusal(r: Guardrails, **body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        guard(r, **body)
    return info.value


def plan(body: dict[str, Any], seed: int = 0) -> Plan:
    return plan_request(
        parse_chat_request(body),
        body,
        CATALOG,
        LiveStats(instance="test"),
        random.Random(seed),
        circuits=Circuits(),
        reasoning=reasons(body),
    )


def guarded_plan(r: Guardrails, seed: int = 0, **body: Any) -> Plan:
    """The plan of a guarded request; a plan error goes through `guardrail_error`."""
    guarded = guard(r, **body)
    try:
        return plan(guarded, seed)
    except GatewayError as error:
        raise guardrail_error(r, error) from None


def plan_failure(r: Guardrails, **body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        guarded_plan(r, **body)
    return info.value


# parse_guardrails


def test_parse_reads_every_rule_and_normalizes_names() -> None:
    parsed = parse_guardrails(
        {
            "allowed_models": [" acme/trio ", "acme/backup", "ACME/TRIO"],
            "allowed_providers": ["alpha", "  beta"],
            "zdr": True,
            "data_collection": "deny",
            "max_tokens": 1000,
        }
    )
    assert parsed == Guardrails(
        allowed_models=["acme/trio", "acme/backup"],  # stripped, each once
        allowed_providers=["alpha", "beta"],
        zdr=True,
        data_collection="deny",
        max_tokens=1000,
    )
    # what keys store (msgspec.to_builtins) reads back the same; so does a Guardrails
    assert parse_guardrails(msgspec.to_builtins(parsed)) == parsed
    assert parse_guardrails(parsed) == parsed
    assert parse_guardrails(None) is None
    assert parse_guardrails({}) is None  # no rule set: no guardrails
    assert parse_guardrails({"allowed_models": None, "zdr": False}) is None


def test_public_shows_every_rule() -> None:
    assert rails(max_tokens=5).public() == {
        "allowed_models": None,
        "allowed_providers": None,
        "zdr": False,
        "data_collection": None,
        "max_tokens": 5,
    }


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"max_tokens": 0}, "guardrails.max_tokens"),
        ({"max_tokens": "5"}, "guardrails.max_tokens"),
        ({"max_tokens": True}, "guardrails.max_tokens"),
        ({"max_tokens": 5.0}, "guardrails.max_tokens"),
        ({"zdr": "yes"}, "guardrails.zdr"),
        ({"data_collection": "sometimes"}, "guardrails.data_collection"),
        ({"allowed_models": []}, "guardrails.allowed_models"),
        ({"allowed_models": "acme/trio"}, "guardrails.allowed_models"),
        ({"allowed_models": ["acme/trio", "  "]}, "guardrails.allowed_models[1]"),
        ({"allowed_models": [7]}, "guardrails.allowed_models[0]"),
        ({"allowed_providers": ["x" * 201]}, "guardrails.allowed_providers[0]"),
        ({"allowed_providers": [f"p{i}" for i in range(101)]}, "guardrails.allowed_providers"),
        ({"allowed_provider": ["alpha"]}, "guardrails.allowed_provider"),
        (["alpha"], "guardrails"),
        ("zdr", "guardrails"),
    ],
)
def test_parse_refuses_bad_input_naming_the_field(value: object, field: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_guardrails(value)
    assert info.value.status == 400
    assert info.value.message.startswith(field + " "), info.value.message


def test_parse_takes_the_largest_lists() -> None:
    names = [f"p{i}" for i in range(100)]
    assert rails(allowed_providers=names, allowed_models=["x" * 200]).allowed_providers == names


# guard_body: models


def test_allowed_models_refuses_any_other_model() -> None:
    r = rails(allowed_models=["acme/backup", "other/model"])
    error = refusal(r)
    assert error.status == 403 and error.error_type == "permission_denied"
    assert error.message == (
        "Guardrail 'allowed_models': this key may not use acme/trio "
        "(allowed: acme/backup, other/model)"
    )
    assert error.metadata["guardrail"] == "allowed_models"
    # every fallback model is checked too
    assert refusal(r, model="acme/backup", models=["acme/trio"]).metadata["model"] == "acme/trio"
    assert guard(r, model="acme/backup", models=["acme/backup"])["model"] == "acme/backup"
    # a request with `models` only
    assert guard(r, model=None, models=["Acme/Backup"])["models"] == ["Acme/Backup"]


def test_a_base_id_allows_its_variants_and_a_variant_only_itself() -> None:
    base = rails(allowed_models=["acme/trio"])
    for name in ("acme/trio", "ACME/Trio", "acme/trio:free", "acme/trio:nitro", "acme/trio:floor"):
        assert guard(base, model=name)["model"] == name
    free = rails(allowed_models=["acme/trio:free"])
    assert guard(free, model="acme/trio:free")["model"] == "acme/trio:free"
    for name in ("acme/trio", "acme/trio:nitro", "acme/backup"):
        assert refusal(free, model=name).metadata["guardrail"] == "allowed_models"


def test_a_model_is_allowed_by_the_id_its_name_resolves_to() -> None:
    r = rails(allowed_models=["acme/trio"])
    aliases = {"trio-latest": "acme/trio", "elsewhere": "acme/backup"}
    body = {"model": "trio-latest", "messages": MESSAGES}
    assert guard_body(r, body, resolve=aliases.get)["model"] == "trio-latest"
    with pytest.raises(GatewayError):
        guard_body(r, {**body, "model": "elsewhere"}, resolve=aliases.get)
    with pytest.raises(GatewayError):  # unknown to the catalog and not allowed by name
        guard_body(r, {**body, "model": "nobody/knows"}, resolve=aliases.get)


def test_the_error_lists_at_most_ten_allowed_models() -> None:
    r = rails(allowed_models=[f"m/{i}" for i in range(25)])
    assert refusal(r).message.endswith("m/8, m/9 and 15 more)")


# guard_body: provider preferences and max_tokens


def test_allowed_providers_become_only_or_narrow_it() -> None:
    r = rails(allowed_providers=["alpha", "beta"])
    assert guard(r)["provider"] == {"only": ["alpha", "beta"]}
    narrowed = guard(r, provider={"only": ["beta", "gamma"], "ignore": ["alpha"], "sort": "price"})
    assert narrowed["provider"] == {"only": ["beta"], "ignore": ["alpha"], "sort": "price"}
    # a tag of an allowed provider stays; an allowed tag narrows a requested slug
    assert guard(r, provider={"only": ["Alpha/fast"]})["provider"]["only"] == ["Alpha/fast"]
    tag = rails(allowed_providers=["alpha/fast"])
    assert guard(tag, provider={"only": ["alpha"]})["provider"]["only"] == ["alpha/fast"]
    assert guard(r, provider={"only": []})["provider"]["only"] == ["alpha", "beta"]
    error = refusal(r, provider={"only": ["gamma", "delta"]})
    assert error.status == 403 and error.metadata["guardrail"] == "allowed_providers"
    assert error.message == (
        "Guardrail 'allowed_providers': this key may not use the providers this request "
        "allows (gamma, delta); allowed: alpha, beta"
    )


def test_data_policy_is_forced() -> None:
    assert guard(rails(zdr=True))["provider"] == {"zdr": True}
    assert guard(rails(zdr=True), provider={"zdr": False})["provider"] == {"zdr": True}
    deny = rails(data_collection="deny")
    assert guard(deny, provider={"data_collection": "allow"})["provider"] == {
        "data_collection": "deny"
    }
    allow = rails(data_collection="allow")  # "allow" forces nothing
    assert "provider" not in guard(allow)
    assert guard(allow, provider={"data_collection": "deny"})["provider"] == {
        "data_collection": "deny"
    }


def test_max_tokens_caps_the_request() -> None:
    r = rails(max_tokens=1000)
    assert guard(r)["max_tokens"] == 1000
    assert guard(r, max_tokens=10)["max_tokens"] == 10
    assert guard(r, max_tokens=1000)["max_tokens"] == 1000
    limited = guard(r, max_completion_tokens=200)
    assert limited["max_completion_tokens"] == 200 and "max_tokens" not in limited
    for field in ("max_tokens", "max_completion_tokens"):
        error = refusal(r, **{field: 1001})
        assert error.status == 403 and error.metadata["guardrail"] == "max_tokens"
        assert error.message == (
            "Guardrail 'max_tokens': this key may ask for at most 1000 completion tokens; "
            f"this request's {field} is 1001"
        )
    assert parse_chat_request(guard(r)).completion_limit == 1000


def test_the_input_body_is_not_changed() -> None:
    r = rails(
        allowed_models=["acme/trio"],
        allowed_providers=["alpha"],
        zdr=True,
        data_collection="deny",
        max_tokens=50,
    )
    body = {
        "model": "acme/trio",
        "messages": MESSAGES,
        "provider": {"only": ["alpha", "beta"], "ignore": ["gamma"]},
    }
    before = copy.deepcopy(body)
    guarded = guard_body(r, body, resolve=CATALOG.canonical_id)
    assert body == before
    assert guarded == {
        **before,
        "provider": {
            "only": ["alpha"],
            "ignore": ["gamma"],
            "zdr": True,
            "data_collection": "deny",
        },
        "max_tokens": 50,
    }
    # rules that change nothing still give a new body
    unchanged = guard_body(rails(allowed_models=["acme/x"]), body, resolve=lambda _: "acme/x")
    assert unchanged == before and unchanged is not body


# the guarded request through the real plan


def test_routing_never_leaves_the_allowed_providers() -> None:
    r = rails(allowed_providers=["alpha"])
    for seed in range(20):
        chosen = guarded_plan(
            r,
            seed,
            models=["acme/backup"],
            provider={"order": ["beta", "gamma", "delta"], "allow_fallbacks": True},
        )
        assert {e.provider for e in chosen.endpoints} == {"alpha"}
        assert [e.tag for e in chosen.endpoints] in (
            ["alpha", "alpha/fast"],
            ["alpha/fast", "alpha"],
        )
    # route "sort" merges the models' endpoints: still only alpha's
    merged = guarded_plan(r, models=["acme/backup", "acme/trio:free"], route="sort")
    assert {e.provider for e in merged.endpoints} == {"alpha"}


@settings(max_examples=150, deadline=None)
@given(
    allowed=st.lists(st.sampled_from(PROVIDERS + ("alpha/fast",)), min_size=1, unique=True),
    only=st.none() | st.lists(st.sampled_from(PROVIDERS + ("alpha/fast", "Beta")), max_size=3),
    order=st.none() | st.lists(st.sampled_from(PROVIDERS), max_size=3),
    ignore=st.none() | st.lists(st.sampled_from(PROVIDERS), max_size=2),
    fallbacks=st.none() | st.booleans(),
    sort=st.none() | st.sampled_from(["price", "latency", "throughput"]),
    models=st.lists(st.sampled_from(["acme/trio", "acme/backup", "acme/trio:free"]), max_size=3),
    route=st.none() | st.just("sort"),
    seed=st.integers(0, 1000),
)
def test_no_plan_holds_an_endpoint_outside_the_allowed_providers(
    allowed: list[str],
    only: list[str] | None,
    order: list[str] | None,
    ignore: list[str] | None,
    fallbacks: bool | None,
    sort: str | None,
    models: list[str],
    route: str | None,
    seed: int,
) -> None:
    r = rails(allowed_providers=allowed)
    prefs = {
        k: v
        for k, v in {
            "only": only,
            "order": order,
            "ignore": ignore,
            "allow_fallbacks": fallbacks,
            "sort": sort,
        }.items()
        if v is not None
    }
    try:
        chosen = guarded_plan(r, seed, models=models, provider=prefs, route=route)
    except GatewayError as error:
        assert error.status in (403, 404), error.message
        return
    for endpoint in chosen.endpoints:
        assert endpoint.provider in allowed or endpoint.tag in allowed, endpoint.id


def test_zdr_and_data_collection_filter_endpoints() -> None:
    for r in (rails(zdr=True), rails(data_collection="deny")):
        chosen = guarded_plan(r, provider={"data_collection": "allow", "zdr": False})
        assert {e.provider for e in chosen.endpoints} == {"alpha"}
    # "allow" leaves every endpoint to the request
    assert len(guarded_plan(rails(data_collection="allow")).endpoints) == 4


# guardrail_error


@pytest.mark.parametrize(
    ("rule", "fields", "message"),
    [
        (
            "allowed_providers",
            {"allowed_providers": ["beta", "gamma"]},
            "this key may only use the providers beta, gamma",
        ),
        ("zdr", {"zdr": True}, "this key may only use zero-data-retention endpoints"),
        (
            "data_collection",
            {"data_collection": "deny"},
            "this key may only use endpoints that do not collect prompts",
        ),
    ],
)
def test_a_plan_the_guardrail_empties_is_a_403_naming_it(
    rule: str, fields: dict[str, Any], message: str
) -> None:
    error = plan_failure(rails(**fields), model="acme/backup")
    assert error.status == 403 and error.error_type == "permission_denied"
    assert error.metadata["guardrail"] == rule
    assert error.message.startswith(f"Guardrail '{rule}': {message}, and no such endpoint")
    assert "acme/backup" in error.message
    assert error.metadata["availability"]["code"] == "constraint_filtered"


def test_the_guardrail_named_is_among_the_causes() -> None:
    # allowed_providers removed beta and gamma; the request's max_price removed alpha
    r = rails(allowed_providers=["alpha"])
    error = plan_failure(r, provider={"max_price": {"prompt": 0.5}})
    assert error.metadata["guardrail"] == "allowed_providers"
    assert "(endpoints excluded by: allowed_providers, max_price)" in error.message
    # `order` without fallbacks names only providers the guardrail took away
    error = plan_failure(r, provider={"order": ["beta"], "allow_fallbacks": False})
    assert error.status == 403 and error.metadata["guardrail"] == "allowed_providers"
    # two guardrails: the one whose filter left nothing is named
    both = rails(allowed_providers=["alpha", "beta"], zdr=True)
    assert plan_failure(both, model="acme/backup").metadata["guardrail"] == "allowed_providers"
    zdr_last = rails(allowed_providers=["beta", "gamma", "delta"], zdr=True)
    assert plan_failure(zdr_last, model="acme/trio").metadata["guardrail"] == "zdr"


def test_errors_the_guardrails_did_not_cause_are_unchanged() -> None:
    everyone = rails(allowed_providers=list(PROVIDERS), zdr=False)
    # the request's own preference emptied the plan; the guardrail removed nothing
    error = plan_failure(everyone, provider={"ignore": ["alpha", "beta", "gamma"]})
    assert error.status == 404 and "guardrail" not in error.metadata
    assert error.metadata["availability"]["excluded_by"] == ["ignored_providers"]
    # a guardrail not forced (data_collection "allow") is never blamed
    allow = rails(data_collection="allow")
    error = plan_failure(allow, model="acme/backup", provider={"data_collection": "deny"})
    assert error.status == 404 and "guardrail" not in error.metadata
    # an unusable provider, an unknown model, a too long request
    assert plan_failure(rails(zdr=True), model="acme/locked").status == 404
    assert plan_failure(rails(zdr=True), model="acme/nothing").status == 404
    long = plan_failure(rails(allowed_providers=["alpha"]), max_tokens=40000)
    assert long.status == 400 and "guardrail" not in long.metadata
    # not a plan error at all
    other = GatewayError(502, "upstream failed")
    assert guardrail_error(rails(zdr=True), other) is other
