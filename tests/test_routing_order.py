"""Endpoint ordering through a fresh server: sorts, variants, thresholds, balancing, circuits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import shared_config
from harness import Server, Simulator


@pytest.fixture(scope="module")
def fresh(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: live figures and circuits here come only from this module's traffic."""
    srv = Server(
        tmp_path_factory.mktemp("order"),
        shared_config(sims),
        env={"CROSSROADS_ROUTING_SEED": "20261127"},
    )
    yield srv
    srv.stop()


@pytest.fixture
def pristine(sims: dict[str, Simulator], tmp_path: Path) -> Iterator[Server]:
    """A server with no traffic at all yet (circuits stay open for 30 s once tripped)."""
    srv = Server(tmp_path, shared_config(sims), env={"CROSSROADS_CIRCUIT_COOLDOWN_SECONDS": "30"})
    yield srv
    srv.stop()


def served(server: Server, model: str = "acme/trio", **body) -> str:
    """Which provider served, through the official openai SDK."""
    return server.sdk_chat(model, **body).model_extra["provider"]


def warm_up(server: Server, sims, behaviour: dict[str, dict]) -> None:
    """Give each endpoint live figures: a few streamed requests pinned to it."""
    for name, settings in behaviour.items():
        sims[name].configure(**settings)
        for _ in range(3):
            r = server.post(
                "/chat/completions",
                {
                    "model": "acme/trio",
                    "stream": True,
                    "provider": {"only": [name]},
                    "messages": [{"role": "user", "content": "warm up now"}],
                },
            )
            assert r.status_code == 200 and "[DONE]" in r.text
        sims[name].reset()


def test_price_weighted_first_choice(fresh: Server) -> None:
    """First choice ~ 1/price^2: alpha (2e-6/token) : beta (4e-6) : gamma (6e-6) = 36 : 9 : 4."""
    n = 500
    counts = Counter(served(fresh) for _ in range(n))
    expected = {"Alpha": n * 36 / 49, "Beta": n * 9 / 49, "Gamma": n * 4 / 49}
    chi2 = sum((counts[k] - v) ** 2 / v for k, v in expected.items())
    assert chi2 < 13.8, (counts, chi2)  # the 0.1% critical value, 2 degrees of freedom
    assert counts["Gamma"] > 0 and counts["Beta"] > counts["Gamma"]


def test_sort_price_and_floor_variant(fresh: Server) -> None:
    assert {served(fresh, provider={"sort": "price"}) for _ in range(20)} == {"Alpha"}
    assert {served(fresh, "acme/trio:floor") for _ in range(20)} == {"Alpha"}
    assert fresh.sdk_chat("acme/trio:floor").model == "acme/trio"


def test_sort_by_latency_and_throughput(pristine: Server, sims) -> None:
    fresh = pristine
    warm_up(
        fresh,
        sims,
        {
            "alpha": {"latency_ms": 150, "tokens_per_second": 10},
            "beta": {"tokens_per_second": 30},
            "gamma": {"latency_ms": 60},
        },
    )
    assert served(fresh, provider={"sort": "latency"}) == "Beta"
    assert served(fresh, provider={"sort": {"by": "latency"}}) == "Beta"
    assert served(fresh, provider={"sort": "throughput"}) == "Gamma"
    assert served(fresh, "acme/trio:nitro") == "Gamma"
    endpoints = {
        e["tag"]: e for e in fresh.get("/models/acme/trio/endpoints").json()["data"]["endpoints"]
    }
    assert (
        endpoints["alpha"]["latency_last_30m"]["p50"]
        >= 150
        > endpoints["beta"]["latency_last_30m"]["p50"]
    )
    assert (
        endpoints["gamma"]["throughput_last_30m"]["p50"]
        > endpoints["alpha"]["throughput_last_30m"]["p50"]
    )
    # thresholds move, never remove: alpha is cheapest but slow
    assert served(fresh, provider={"sort": "price", "preferred_max_latency": 0.1}) == "Beta"
    assert (
        served(fresh, provider={"sort": "price", "preferred_max_latency": {"p50": 0.1, "p90": 0.1}})
        == "Beta"
    )
    assert served(fresh, provider={"sort": "price", "preferred_min_throughput": 1e6}) == "Alpha"
    assert served(fresh, provider={"only": ["alpha"], "preferred_max_latency": 0.01}) == "Alpha"


def test_order_with_and_without_fallbacks(fresh: Server, sims) -> None:
    assert served(fresh, provider={"order": ["gamma", "beta"]}) == "Gamma"
    sims["gamma"].configure(fail_rate=1.0, status=500)
    assert served(fresh, provider={"order": ["gamma", "beta"]}) == "Beta"
    r = fresh.chat("acme/trio", provider={"order": ["gamma"], "allow_fallbacks": False})
    assert r.status_code == 500


def test_partition_none_sorts_across_models(fresh: Server) -> None:
    body = {"models": ["acme/backup", "acme/trio"]}
    assert served(fresh, "acme/backup", provider={"sort": "price"}, **body) == "Delta"
    r = fresh.sdk_chat(
        "acme/backup", provider={"sort": {"by": "price", "partition": "none"}}, **body
    )
    assert r.model_extra["provider"] == "Alpha" and r.model == "acme/trio"
    assert served(fresh, "acme/backup", route="sort", **body) == "Alpha"


def test_an_endpoint_failing_three_times_in_a_row_moves_last(pristine: Server, sims) -> None:
    fresh = pristine
    alpha_only = {"provider": {"only": ["alpha"]}}
    sims["alpha"].configure(fail_rate=1.0, status=503)
    for _ in range(2):
        assert fresh.chat("acme/trio", **alpha_only).status_code == 503
    sims["alpha"].reset()  # two failures in a row: its circuit is still closed
    assert Counter(served(fresh) for _ in range(30))["Alpha"] > 0
    sims["alpha"].configure(fail_rate=1.0, status=503)
    for _ in range(3):
        assert fresh.chat("acme/trio", **alpha_only).status_code == 503
    sims["alpha"].reset()  # healthy again, but its circuit is open for the cooldown (30 s here)
    counts = Counter(served(fresh) for _ in range(60))
    assert counts["Alpha"] == 0 and counts["Beta"] > counts["Gamma"] > 0
    assert served(fresh, provider={"sort": "price"}) == "Beta"  # every ordering mode
    assert served(fresh, provider={"order": ["alpha", "gamma"]}) == "Gamma"
    assert served(fresh, **alpha_only) == "Alpha"  # still tried when nothing else is allowed
