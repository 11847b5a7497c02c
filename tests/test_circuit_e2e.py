"""Circuits through real processes: a server in front of simulated providers (acme/trio: alpha
1/1 is the cheapest, then beta 2/2 and gamma 3/3; see conftest.py).

An endpoint that goes hard down is set aside after a few failed attempts, the requests keep
succeeding through the fallbacks, and once it recovers its traffic returns within seconds;
a rate-limited endpoint rests for its Retry-After.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import shared_config
from harness import Server, Simulator

COOLDOWN = 5.0  # seconds: the default; long enough that the 20 requests of the outage all
# fall inside the first cooldown even on a busy machine, short enough to see the recovery


@pytest.fixture
def server(sims: dict[str, Simulator], tmp_path: Path) -> Iterator[Server]:
    """A server of its own: its circuits know only this test's traffic."""
    config = shared_config(sims)
    config["server"].update(circuit_cooldown_seconds=COOLDOWN, circuit_max_cooldown_seconds=8)
    srv = Server(tmp_path, config)
    yield srv
    srv.stop()


def ask(server: Server, **body: object) -> httpx.Response:
    r = server.chat("acme/trio", **body)
    assert r.status_code == 200, r.text
    return r


def attempts_at(server: Server, response: httpx.Response, slug: str) -> int:
    """How many attempts of this request's generation record went to `slug`."""
    record = server.generation(response.json()["id"])
    return sum(1 for a in record["attempts"] if a["provider_slug"] == slug)


def requests_to(sim: Simulator) -> int:
    return int(sim.state()["counters"]["requests"])


def test_a_hard_down_cheapest_endpoint_is_set_aside_and_comes_back(server: Server, sims) -> None:
    alpha = sims["alpha"]
    served = Counter[str]()
    while served["Alpha"] < 50:  # the cheapest serves most of the price-weighted draws
        served[ask(server).json()["provider"]] += 1
        assert sum(served.values()) < 200, served
    assert served["Beta"] + served["Gamma"] > 0  # a draw, not a fixed order

    alpha.configure(fail_rate=1.0, status=500)  # hard down: every attempt fails
    before = requests_to(alpha)
    down = [ask(server) for _ in range(20)]  # every one succeeds through a fallback
    assert {r.json()["provider"] for r in down} <= {"Beta", "Gamma"}
    tried = sum(attempts_at(server, r, "alpha") for r in down)
    assert 1 <= tried <= 3, tried  # the circuit opened after 3 failed attempts at most
    assert requests_to(alpha) - before == tried

    alpha.reset()  # recovered
    recovered = time.monotonic()
    while ask(server).json()["provider"] != "Alpha":
        assert time.monotonic() - recovered < 4 * COOLDOWN + 2, "traffic never came back"
        time.sleep(0.1)
    # closed again: alpha is back in the draw at its share (36 of 49 expected)
    back = Counter(ask(server).json()["provider"] for _ in range(40))
    assert back["Alpha"] > 20, back


def test_a_rate_limited_endpoint_rests_for_its_retry_after(server: Server, sims) -> None:
    alpha = sims["alpha"]
    alpha.configure(fail_rate=1.0, status=429, retry_after="3")
    by_price = {"provider": {"sort": "price"}}  # alpha first while its circuit admits it
    first = ask(server, **by_price)
    limited = time.monotonic()
    assert first.json()["provider"] == "Beta" and attempts_at(server, first, "alpha") == 1
    assert requests_to(alpha) == 1

    alpha.reset()  # it would answer now, but asked to be left alone for 3 s
    rested = [ask(server, **by_price) for _ in range(10)]
    assert time.monotonic() - limited < 3, "too slow to observe the rest"
    assert {r.json()["provider"] for r in rested} == {"Beta"}
    assert requests_to(alpha) == 0  # reset cleared its counters; nothing reached it since

    time.sleep(max(0.0, limited + 3.2 - time.monotonic()))
    assert ask(server, **by_price).json()["provider"] == "Alpha"  # the probe
    assert {ask(server, **by_price).json()["provider"] for _ in range(5)} == {"Alpha"}


def test_the_callers_own_errors_never_set_an_endpoint_aside(server: Server, sims) -> None:
    alpha = sims["alpha"]
    alpha.configure(fail_rate=1.0, status=400)  # the request refused, again and again
    for _ in range(6):
        r = server.chat("acme/trio", provider={"sort": "price"})
        assert r.status_code == 400
    alpha.reset()
    assert ask(server, provider={"sort": "price"}).json()["provider"] == "Alpha"
