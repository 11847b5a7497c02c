"""GET /api/v1/generations?limit=N: a key's latest generation records, newest first; a
management key sees every key's. End to end on a real server with a fast recorder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest

from crossroads.schema.generation import GenerationRecord
from crossroads.storage import GenerationStore, make_engine, migrate
from harness import HTTP, POSTGRES, Server, Simulator, drop_postgres, temporary_postgres
from limits_setup import SERVER, bearer, chat_body, mgmt, paid_catalog, start, waited


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start(tmp_path_factory.mktemp("generations"), {"server": SERVER, **paid_catalog(sims)})
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not POSTGRES:
        pytest.skip("CROSSROADS_TEST_POSTGRES_URL is not set (make test sets it)")
    url, name = await temporary_postgres()
    yield url
    await drop_postgres(name)


async def test_the_store_lists_a_key_s_newest_records(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    store = GenerationStore(engine)
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    keys = ["a" * 64, "b" * 64, None]
    records = [
        GenerationRecord(
            id=f"gen-{n:02d}",
            created_at=start + timedelta(seconds=n // 2),  # pairs share a time: id breaks ties
            model="acme/one",
            api_key_hash=keys[n % 3],
        )
        for n in range(12)
    ]
    try:
        await store.insert_many([r.to_row() for r in reversed(records)])
        mine = await store.recent("a" * 64, 3)
        assert [r.id for r in mine] == ["gen-09", "gen-06", "gen-03"]
        assert all(r.created_at.tzinfo is not None for r in mine)
        assert mine[0].created_at == start + timedelta(seconds=4)
        every = await store.recent(None, 100)
        assert [r.id for r in every] == [f"gen-{n:02d}" for n in reversed(range(12))]
        assert await store.recent("c" * 64, 10) == []
    finally:
        await engine.dispose()


def listed(srv: Server, headers: dict[str, str], query: str = "") -> Any:
    return HTTP.get(srv.base_url + "/generations" + query, headers=headers)


def made(srv: Server, key: str, count: int) -> list[str]:
    """The ids of `count` chat completions made with `key`, in order."""
    ids = []
    for n in range(count):
        r = srv.post("/chat/completions", chat_body("acme/paid", f"hello {n}"), key=key)
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


def ids_of(srv: Server, headers: dict[str, str], query: str, expected: set[str]) -> list[str]:
    """The listed ids, once every one of `expected` is among them (the recorder writes
    in the background)."""

    def check() -> list[str] | None:
        r = listed(srv, headers, query)
        assert r.status_code == 200, r.text
        ids = [g["id"] for g in r.json()["data"]]
        return ids if expected <= set(ids) else None

    return waited(check, what="the generation records")


def test_a_key_sees_its_own_records_newest_first(srv: Server) -> None:
    mine, theirs = srv.create_key("mine")["key"], srv.create_key("theirs")["key"]
    my_ids = made(srv, mine, 3)
    their_ids = made(srv, theirs, 2)

    ids = ids_of(srv, bearer(mine), "", set(my_ids))
    assert ids == list(reversed(my_ids))  # nobody else's, newest first
    assert ids_of(srv, bearer(theirs), "", set(their_ids)) == list(reversed(their_ids))

    r = listed(srv, bearer(mine), "?limit=2")
    assert [g["id"] for g in r.json()["data"]] == list(reversed(my_ids))[:2]
    record = r.json()["data"][0]  # the public shape of /generation
    assert record == srv.get(f"/generation?id={record['id']}", key=mine).json()["data"]
    assert record["model"] == "acme/paid"
    assert record["provider_name"] and record["total_cost"] > 0
    assert record["latency"] is not None


def test_a_management_key_sees_every_key(srv: Server) -> None:
    one, two = srv.create_key("one")["key"], srv.create_key("two")["key"]
    expected = set(made(srv, one, 1) + made(srv, two, 1))
    ids = ids_of(srv, mgmt(srv), "?limit=100", expected)
    assert len(ids) == len(set(ids))
    times = [g["created_at"] for g in listed(srv, mgmt(srv), "?limit=100").json()["data"]]
    assert times == sorted(times, reverse=True)


def test_a_key_without_records_gets_an_empty_list(srv: Server) -> None:
    fresh = srv.create_key("fresh")["key"]
    made(srv, srv.create_key("busy")["key"], 1)
    r = listed(srv, bearer(fresh))
    assert r.status_code == 200, r.text
    assert r.json() == {"data": []}


def test_the_default_limit_is_20(srv: Server) -> None:
    many = srv.create_key("many")["key"]
    expected = set(made(srv, many, 21))
    assert len(ids_of(srv, bearer(many), "?limit=100", expected)) == 21
    assert len(listed(srv, bearer(many)).json()["data"]) == 20


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5", ""])
def test_a_bad_limit_is_a_400_naming_it(srv: Server, limit: str) -> None:
    r = listed(srv, mgmt(srv), f"?limit={limit}")
    assert r.status_code == 400, r.text
    assert "'limit'" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer sk-cr-v1-nope"}, {"Authorization": "Basic abc"}],
)
def test_without_a_valid_key_it_is_a_401(srv: Server, headers: dict[str, str]) -> None:
    r = listed(srv, headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == 401


def test_metadata_and_trace_are_kept_on_the_generation(srv: Server) -> None:
    """The request's `metadata` and `trace`, sent through the openai SDK, come back from
    GET /generation as they were sent; malformed ones are a 400 naming the field."""
    key = srv.create_key("traced")["key"]
    client = openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0)
    metadata = {"user_id": "u-123", "feature": "search"}
    trace = {"trace_id": "t-1", "span_name": "answer", "custom": {"depth": 2}}
    answer = client.chat.completions.create(
        model="acme/paid",
        messages=[{"role": "user", "content": "hello"}],
        extra_body={"metadata": metadata, "trace": trace},
    )

    def shown() -> dict[str, Any] | None:
        r = srv.get(f"/generation?id={answer.id}", key=key)
        return r.json()["data"] if r.status_code == 200 else None

    record = waited(shown, what="the generation")
    assert (record["metadata"], record["trace"]) == (metadata, trace)
    for bad in (
        {"metadata": {f"k{n}": "v" for n in range(17)}},  # 16 pairs at most
        {"metadata": {"k": "v" * 513}},  # 512 characters a value
        {"metadata": {"k": 1}},  # text only
        {"trace": {"blob": "x" * 5000}},  # 4 KB in all
    ):
        r = srv.post("/chat/completions", chat_body("acme/paid", **bad), key=key)
        assert r.status_code == 400, (bad, r.text)
        assert "metadata" in r.text or "trace" in r.text
