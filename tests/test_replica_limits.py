"""Limits across replicas, with real processes: two `crossroads serve` replicas on one
PostgreSQL database and one redis-server of the test's own (stopped and restarted by the
test), a simulator as the provider.

Money is compared in pico-USD (`accounting.money.to_pico`): exactly. A request's worst case
is read from the 402 a key with a limit of 0 answers ("may cost up to $X"); the prices
(1000 USD per million tokens, 0.001 USD a token) make it exact to the 6 decimals shown.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossroads.accounting.money import to_pico, to_usd
from harness import HTTP, RedisProcess, Server, Simulator, endpoint, provider
from limits_setup import management, usage

MODEL = "acme/meter"
FREE = "acme/meter:free"
MAX_TOKENS = 8  # every ordinary request's max_tokens: its worst case is small and fixed
BIG_MAX_TOKENS = 1500  # a worst case beyond every test key's limit: refused, changes nothing
SETTLED = 0.3  # seconds for a settlement (a background task after the answer) to land
WORST_CASE = re.compile(r"may cost up to \$([0-9.]+)")


def config(sim: Simulator) -> dict[str, Any]:
    return {
        "server": {"free_requests_per_minute": 4},
        "providers": [provider("meter", sim)],
        "models": [
            {
                "id": MODEL,
                "endpoints": [
                    endpoint("meter", 1000, 1000, context_length=8192, max_completion_tokens=2000)
                ],
            },
            {"id": FREE, "endpoints": [endpoint("meter", 0, 0)]},
        ],
    }


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    started = Simulator("meter")
    yield started
    started.stop()


@pytest.fixture
def own_redis(sim: Simulator) -> Iterator[RedisProcess]:
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()
        sim.reset()


@pytest.fixture
def replicas(
    sim: Simulator, tmp_path: Path, postgres_url: str, own_redis: RedisProcess
) -> Iterator[Callable[[str], Server]]:
    """Replicas on one PostgreSQL database and the test's Redis, each its own port."""
    servers: list[Server] = []

    def start(name: str) -> Server:
        server = Server(
            tmp_path / name, config(sim), "--database", postgres_url, "--redis", own_redis.url
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- helpers -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    cost: int  # pico-USD the answer's usage says, 0 without one
    seconds: float
    text: str


def chat(
    server: Server,
    key: str,
    *,
    model: str = MODEL,
    max_tokens: int = MAX_TOKENS,
    client: httpx.Client = HTTP,
) -> Answer:
    began = time.monotonic()
    r = client.post(
        server.url("/api/v1/chat/completions"),
        json={
            "model": model,
            "messages": [{"role": "user", "content": "count my spend please"}],
            "max_tokens": max_tokens,
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    seconds = time.monotonic() - began
    cost = to_pico(r.json()["usage"]["cost"]) if r.status_code == 200 else 0
    return Answer(r.status_code, cost, seconds, r.text)


def limits_health(server: Server) -> dict[str, Any]:
    r = HTTP.get(server.url("/health"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["limits"]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - began


def new_key(server: Server, name: str, **fields: Any) -> tuple[str, str]:
    """A key created through `server`: (its token, its hash)."""
    created = server.create_key(name, **fields)
    return created["key"], created["data"]["hash"]


def known(server: Server, token: str) -> bool:
    return server.get("/key", key=token).status_code == 200


def worst_case(server: Server) -> int:
    """What an ordinary request may cost at most (pico-USD), from the 402 of a key whose
    limit is 0."""
    token, _ = new_key(server, "probe", limit=0)
    answer = chat(server, token)
    assert answer.status == 402 and "Key limit exceeded" in answer.text, answer.text
    found = WORST_CASE.search(answer.text)
    assert found, answer.text
    return to_pico(found.group(1))


def refused_for_limit(answer: Answer) -> bool:
    return answer.status == 402 and "Key limit exceeded" in answer.text


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_replicas_never_pass_a_key_limit_together(
    replicas: Callable[[str], Server], sim: Simulator
) -> None:
    a, b = replicas("a"), replicas("b")
    w = worst_case(a)
    n = 5
    limit = n * w + w // 2  # covers n worst cases, not n + 1
    token, key_hash = new_key(a, "shared-limit", limit=to_usd(limit))
    wait_for(lambda: known(b, token), 2.0, "the key on b")
    sim.configure(latency_ms=3000)  # every admission happens while the first n are upstream
    clients = [httpx.Client(timeout=30) for _ in range(10 * n)]
    start = threading.Barrier(10 * n)

    def send(i: int) -> Answer:
        start.wait()  # all at once, from clients built beforehand
        return chat((a, b)[i % 2], token, client=clients[i])

    try:
        with ThreadPoolExecutor(10 * n) as pool:
            answers = list(pool.map(send, range(10 * n)))
    finally:
        for client in clients:
            client.close()
    refusals = [x.seconds for x in answers if x.status != 200]
    assert max(refusals, default=0.0) < 2.0  # every one was decided before any answer settled
    served = [x for x in answers if x.status == 200]
    assert len(served) == n, [(x.status, x.text[:120]) for x in answers]
    assert all(refused_for_limit(x) for x in answers if x.status != 200), answers
    spent = sum(x.cost for x in served)
    assert 0 < spent <= limit
    assert all(x.cost <= w for x in served)
    for server in (a, b):  # the same spend, read through either replica
        wait_for(lambda s=server: usage(s, key_hash) == spent, 2.0, "the usage")


@pytest.mark.postgres
def test_free_variant_counters_are_shared(replicas: Callable[[str], Server]) -> None:
    a, b = replicas("a"), replicas("b")
    if time.time() % 60 > 45:  # the per-minute window must not turn over meanwhile
        time.sleep(61 - time.time() % 60)
    token, _ = new_key(a, "free-user")
    wait_for(lambda: known(b, token), 2.0, "the key on b")
    for i in range(4):  # four a minute, alternately on a and b
        answer = chat((a, b)[i % 2], token, model=FREE)
        assert answer.status == 200 and answer.cost == 0, answer.text
    for server in (a, b):  # the fifth, whichever replica it reaches
        answer = chat(server, token, model=FREE)
        assert answer.status == 429, answer.text
        assert "free-models-per-min" in answer.text


@pytest.mark.postgres
def test_key_changes_on_one_replica_reach_the_other_within_two_seconds(
    replicas: Callable[[str], Server],
) -> None:
    a, b = replicas("a"), replicas("b")
    token, key_hash = new_key(a, "travelling", limit=100)
    took = wait_for(lambda: chat(b, token).status == 200, 2.0, "a new key on b")
    assert took < 2.0
    r = management(a, "PATCH", f"/keys/{key_hash}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["data"]["disabled"] is True
    assert chat(a, token).status == 401  # at once where it was disabled
    wait_for(lambda: chat(b, token).status == 401, 2.0, "a disabled key on b")
    r = management(a, "PATCH", f"/keys/{key_hash}", json={"disabled": False})
    assert r.status_code == 200
    wait_for(lambda: chat(b, token).status == 200, 2.0, "an enabled key on b")
    spent = usage(a, key_hash)
    lower = spent + to_pico("0.000001")  # less than a request's worst case left
    r = management(a, "PATCH", f"/keys/{key_hash}", json={"limit": to_usd(lower)})
    assert r.status_code == 200
    assert refused_for_limit(chat(a, token))
    wait_for(lambda: refused_for_limit(chat(b, token)), 2.0, "a lowered limit on b")


@pytest.mark.postgres
def test_key_changes_on_one_replica_never_interrupt_other_keys_on_the_other(
    replicas: Callable[[str], Server],
) -> None:
    """Each key change on a makes b read the keys again; meanwhile b keeps accepting the
    keys it knows (an empty body: 400 once the key is accepted, 401 if it is not)."""
    a, b = replicas("a"), replicas("b")
    assert b.api_key is not None
    token = b.api_key
    stop = threading.Event()
    statuses: Counter[int] = Counter()

    def hammer() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(
                    b.url("/api/v1/chat/completions"),
                    content=b"{}",
                    headers={"Authorization": f"Bearer {token}"},
                )
                statuses[r.status_code] += 1

    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(hammer) for _ in range(8)]
        try:
            for i in range(4):  # four changes, each read again by b within a second
                new_key(a, f"churn-{i}")
                time.sleep(1.2)
        finally:
            stop.set()
        for future in running:
            future.result()
    assert statuses[400] > 100 and set(statuses) == {400}, statuses


@pytest.mark.postgres
def test_a_redis_outage_limits_each_replica_alone_and_the_counters_catch_up(
    replicas: Callable[[str], Server], own_redis: RedisProcess
) -> None:
    a, b = replicas("a"), replicas("b")
    w = worst_case(a)
    c = chat(a, a.api_key or "").cost  # what an ordinary request costs
    assert 0 < c < w
    # key 1 is spent to its limit on each replica alone during the outage; key 2 shows
    # that, back on Redis, the limit counts both replicas' spend again
    limit1 = 4 * c + 3 * w + w // 2
    limit2 = w + c + c // 2  # one request on a replica alone fits; two between them do not
    token1, hash1 = new_key(a, "outage-1", limit=to_usd(limit1))
    token2, hash2 = new_key(a, "outage-2", limit=to_usd(limit2))
    wait_for(lambda: known(b, token1) and known(b, token2), 2.0, "the keys on b")
    before = [chat(s, token1) for s in (a, b, a, b)]
    assert all(x.status == 200 for x in before), before
    shared = sum(x.cost for x in before)
    time.sleep(SETTLED)
    for server in (a, b):  # a refused request reads the counter: both copies know all of it
        assert refused_for_limit(chat(server, token1, max_tokens=BIG_MAX_TOKENS))
        assert usage(server, hash1) == shared

    own_redis.kill()
    served: dict[str, list[Answer]] = {"a": [], "b": []}
    for name, server in (("a", a), ("b", b)):
        assert server.api_key is not None
        plain = chat(server, server.api_key)  # a key without limits
        assert plain.status == 200, plain.text
        answer = chat(server, token2)
        assert answer.status == 200, answer.text
        for _ in range(30):  # key 1 until this replica alone refuses it
            answer = chat(server, token1)
            assert answer.status < 500 and answer.seconds < 1.5, answer
            if answer.status != 200:
                assert refused_for_limit(answer), answer.text
                break
            served[name].append(answer)
        else:
            raise AssertionError("never refused during the outage")
    for name, server in (("a", a), ("b", b)):
        alone = shared + sum(x.cost for x in served[name])
        assert len(served[name]) >= 3
        assert alone <= limit1  # this replica alone never passed the limit
        assert alone + w > limit1  # and refused only when the next could have
        status = limits_health(server)
        assert status["shared"] is True and status["redis"] == "unreachable"
        assert status["pending"] > 0
        log = server.log()
        assert log.count("limits are counted by this replica alone") == 1, log
    total1 = shared + sum(x.cost for name in served for x in served[name])
    assert limit1 < total1 <= shared + 2 * (limit1 - shared)  # over-admitted, bounded

    own_redis.start()  # empty
    for server in (a, b):
        wait_for(lambda s=server: limits_health(s)["redis"] == "ok", 5.0, "redis back")
    for server in (a, b):
        assert limits_health(server)["pending"] == 0
        assert usage(server, hash1) == total1  # what both replicas served, once each
        assert usage(server, hash2) == 2 * c
    for server in (a, b):  # one request on key 2 fitted each replica alone; not now
        assert refused_for_limit(chat(server, token2))
        assert refused_for_limit(chat(server, token1))
    for server in (a, b):
        assert server.log().count("limits are counted by this replica alone") == 1


def test_without_redis_one_process_needs_only_sqlite(sim: Simulator, tmp_path: Path) -> None:
    server = Server(tmp_path, config(sim))
    try:
        status = limits_health(server)
        assert status == {
            "shared": False,
            "redis": "off",
            "since": None,
            "pending": 0,
            "error": None,
        }
        w = worst_case(server)
        limit = 2 * w + w // 2
        token, key_hash = new_key(server, "solo", limit=to_usd(limit))
        answers = [chat(server, token) for _ in range(10)]
        served = [x for x in answers if x.status == 200]
        refused = [x for x in answers if x.status != 200]
        assert len(served) >= 2 and refused and all(refused_for_limit(x) for x in refused)
        spent = sum(x.cost for x in served)
        assert spent <= limit
        wait_for(lambda: usage(server, key_hash) == spent, 2.0, "the usage")
        assert limits_health(server)["redis"] == "off"
    finally:
        server.stop()
