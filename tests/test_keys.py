"""API keys and the management key, through the server and the openrouter SDK."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openrouter import OpenRouter

from conftest import shared_config
from crossroads.accounting.keys import KeyRing, period_starts
from crossroads.storage import KeyStore, make_engine, migrate
from harness import BIN, HTTP, MANAGEMENT_KEY, Server
from openapi_schema import check


def mgmt(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.management_key}"}


def chat_status(server: Server, key: str) -> int:
    body = {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]}
    return server.post("/chat/completions", body, key=key).status_code


def test_create_key_shape_and_use(server: Server) -> None:
    r = HTTP.post(
        server.base_url + "/keys",
        json={"name": "ci", "limit": 5, "limit_reset": "monthly"},
        headers=mgmt(server),
    )
    assert r.status_code == 201
    body = r.json()
    key, data = body["key"], body["data"]
    assert key.startswith("sk-cr-v1-") and len(key) == len("sk-cr-v1-") + 64
    assert data["hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert data["label"] == f"{key[:12]}...{key[-4:]}" and key not in str(data)
    assert data["limit"] == 5 and data["limit_remaining"] == 5 and data["limit_reset"] == "monthly"
    assert server.chat("acme/widget-1", key=None).status_code == 200
    assert (
        server.post(
            "/chat/completions",
            {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]},
            key=key,
        ).status_code
        == 200
    )
    me = server.get("/key", key=key).json()["data"]
    assert server.get("/auth/key", key=key).json()["data"]["hash"] == me["hash"]  # the legacy path
    assert me["usage"] > 0 and me["limit_remaining"] < 5 and me["is_management_key"] is False


def test_key_management_routes(server: Server) -> None:
    created = server.create_key("temporary")
    key, key_hash = created["key"], created["data"]["hash"]
    listed = HTTP.get(server.base_url + "/keys", headers=mgmt(server)).json()["data"]
    assert key_hash in {k["hash"] for k in listed} and all("key" not in k for k in listed)
    assert (
        HTTP.get(server.base_url + f"/keys/{key_hash}", headers=mgmt(server)).json()["data"]["name"]
        == "temporary"
    )
    patched = HTTP.patch(
        server.base_url + f"/keys/{key_hash}", json={"disabled": True}, headers=mgmt(server)
    )
    assert patched.json()["data"]["disabled"] is True
    assert (
        server.post(
            "/chat/completions",
            {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]},
            key=key,
        ).status_code
        == 401
    )
    assert HTTP.delete(server.base_url + f"/keys/{key_hash}", headers=mgmt(server)).json() == {
        "deleted": True
    }
    assert HTTP.get(server.base_url + f"/keys/{key_hash}", headers=mgmt(server)).status_code == 404


def test_keys_need_the_management_key(server: Server) -> None:
    r = HTTP.post(server.base_url + "/keys", json={"name": "x"}, headers=server.headers())
    assert r.status_code == 403 and r.json()["error"]["code"] == 403
    assert HTTP.post(server.base_url + "/keys", json={"name": "x"}).status_code == 401
    assert HTTP.post(server.base_url + "/keys", json={}, headers=mgmt(server)).status_code == 400
    bad = {"name": "x", "expires_at": "2030-01-01T00:00:00+02:00"}
    assert HTTP.post(server.base_url + "/keys", json=bad, headers=mgmt(server)).status_code == 400
    expired = server.create_key("old", expires_at="2020-01-01T00:00:00Z")["key"]
    assert server.get("/key", key=expired).status_code == 401


def test_openrouter_sdk_key_calls(server: Server) -> None:
    with OpenRouter(api_key=server.management_key, server_url=server.base_url) as admin:
        created = admin.api_keys.create(name="from the sdk")
    assert created.key.startswith("sk-cr-v1-")
    with OpenRouter(api_key=created.key, server_url=server.base_url) as client:
        assert client.api_keys.get_current_key_metadata().data.label == created.data.label


def test_generated_management_key_goes_to_a_private_file_never_to_the_output(
    sims, tmp_path: Path
) -> None:
    config = shared_config(sims)
    key_file = tmp_path / "data" / "management-key"
    first = Server(tmp_path, config, management_key=None)
    try:
        generated = key_file.read_text().strip()
        assert generated.startswith("sk-cr-v1-")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        first.management_key = generated
        assert first.create_key("first")["key"].startswith("sk-cr-v1-")
    finally:
        output = first.stop()
    assert "A management key was generated" in output and str(key_file) in output
    assert "listening on" in output and generated not in output
    database = (tmp_path / "data" / "crossroads.db").read_bytes()
    assert generated.encode() not in database
    assert hashlib.sha256(generated.encode()).hexdigest().encode() in database

    second = Server(tmp_path, config, management_key=None)
    second.management_key = generated
    try:
        assert key_file.read_text().strip() == generated  # not generated again
        user_key = second.create_key("after restart")["key"]
        assert chat_status(second, user_key) == 200
    finally:
        output = second.stop()
    assert "A management key was generated" not in output and generated not in output


def test_management_key_rotates_while_the_server_runs(sims, tmp_path: Path) -> None:
    srv = Server(tmp_path, shared_config(sims), management_key=None)
    key_file = tmp_path / "data" / "management-key"
    old = key_file.read_text().strip()
    srv.management_key = old
    try:
        user_key = srv.create_key("survives rotation")["key"]
        out = subprocess.run(
            [str(BIN), "keys", "rotate-management", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        new = key_file.read_text().strip()
        assert new.startswith("sk-cr-v1-") and new != old
        assert str(key_file) in out.stdout and new not in out.stdout + out.stderr
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        # the running server sees the rotation at once: the old key is refused everywhere
        for path in ("/keys", "/key", "/generation?id=gen-none"):
            r = HTTP.get(srv.base_url + path, headers={"Authorization": f"Bearer {old}"})
            assert r.status_code == 401, path
        listed = HTTP.get(srv.base_url + "/keys", headers={"Authorization": f"Bearer {new}"})
        assert listed.status_code == 200
        assert "survives rotation" in {k["name"] for k in listed.json()["data"]}
        me = HTTP.get(srv.base_url + "/key", headers={"Authorization": f"Bearer {new}"})
        assert me.json()["data"]["is_management_key"] is True
        srv.management_key = new
        assert srv.create_key("made with the new key")["key"].startswith("sk-cr-v1-")
        assert chat_status(srv, user_key) == 200  # API keys are untouched
    finally:
        output = srv.stop()
    assert old not in output and new not in output
    again = Server(tmp_path, shared_config(sims), management_key=None)  # after a restart too
    try:
        assert key_file.read_text().strip() == new
        r = HTTP.get(again.base_url + "/keys", headers={"Authorization": f"Bearer {old}"})
        assert r.status_code == 401
        r = HTTP.get(again.base_url + "/keys", headers={"Authorization": f"Bearer {new}"})
        assert r.status_code == 200
    finally:
        again.stop()


BAD_CREATE = [
    ({"name": 5}, "$.name"),
    ({"name": False}, "$.name"),
    ({"name": None}, "$.name"),
    ({"name": ""}, "'name'"),
    ({"name": "   "}, "'name'"),
    ({"name": "x" * 201}, "'name'"),
    ({"name": "tab\tand\x00nul"}, "'name'"),
    ({"limit": 10}, "`name`"),
    ({"name": "x", "creator_user_id": 5}, "$.creator_user_id"),
    ({"name": "x", "creator_user_id": ""}, "'creator_user_id'"),
    ({"name": "x", "creator_user_id": "u" * 201}, "'creator_user_id'"),
    ({"name": "x", "limit": "10"}, "$.limit"),
    ({"name": "x", "limit": True}, "$.limit"),
    ({"name": "x", "limit": -1}, "$.limit"),
    ({"name": "x", "limit": 9_000_000.5}, "$.limit"),
    ({"name": "x", "limit_reset": "yearly"}, "$.limit_reset"),
    ({"name": "x", "limit_reset": 1}, "$.limit_reset"),
    ({"name": "x", "include_byok_in_limit": "yes"}, "$.include_byok_in_limit"),
    ({"name": "x", "include_byok_in_limit": None}, "$.include_byok_in_limit"),
    ({"name": "x", "expires_at": 5}, "$.expires_at"),
    ({"name": "x", "expires_at": "tomorrow"}, "'expires_at'"),
    ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "'expires_at'"),
    ({"name": "x", "workspace_id": 7}, "$.workspace_id"),
    ({"name": "x", "workspace_id": "default"}, "Invalid UUID - at `$.workspace_id`"),
    ({"name": "x", "workspace_id": "0df9e665-d932"}, "Invalid UUID - at `$.workspace_id`"),
    ({"name": "x", "disabled": True}, "disabled"),  # not a field of a new key
    ({"name": "x", "colour": "red"}, "colour"),
    (["name", "x"], "JSON object"),
    ("x", "JSON object"),
]
BAD_PATCH = [
    ({"name": False}, "$.name"),
    ({"name": None}, "$.name"),
    ({"name": 3.5}, "$.name"),
    ({"name": ""}, "'name'"),
    ({"name": " \n "}, "'name'"),
    ({"name": "x" * 201}, "'name'"),
    ({"disabled": "no"}, "$.disabled"),
    ({"disabled": None}, "$.disabled"),
    ({"disabled": 0}, "$.disabled"),
    ({"limit": "5"}, "$.limit"),
    ({"limit": -0.5}, "$.limit"),
    ({"limit": 1e30}, "$.limit"),
    ({"limit": [1]}, "$.limit"),
    ({"limit_reset": "hourly"}, "$.limit_reset"),
    ({"include_byok_in_limit": 1}, "$.include_byok_in_limit"),
    # OpenRouter ignores other fields, and refuses a body without any it takes
    ({"creator_user_id": "someone", "expires_at": "2030-01-01T00:00:00Z"}, "No update fields"),
    ({}, "No update fields"),
    (42, "JSON object"),
]


def test_bad_key_fields_are_400_naming_the_field_and_never_stored(server: Server) -> None:
    before = HTTP.get(server.base_url + "/keys", headers=mgmt(server)).json()["data"]
    for body, needle in BAD_CREATE:
        r = HTTP.post(server.base_url + "/keys", json=body, headers=mgmt(server))
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["error"]["message"], (body, r.text)
    target = server.create_key("patch target", limit=2, creator_user_id="user-1")["data"]
    url = server.base_url + f"/keys/{target['hash']}"
    for body, needle in BAD_PATCH:
        r = HTTP.patch(url, json=body, headers=mgmt(server))
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["error"]["message"], (body, r.text)
    unchanged = HTTP.get(url, headers=mgmt(server)).json()["data"]
    assert {k: unchanged[k] for k in ("name", "limit", "disabled", "updated_at")} == {
        "name": "patch target",
        "limit": 2,
        "disabled": False,
        "updated_at": None,
    }
    after = HTTP.get(server.base_url + "/keys", headers=mgmt(server)).json()["data"]
    assert len(after) == len(before) + 1
    # every listing still parses in the SDK, whose types follow the OpenAPI spec
    with OpenRouter(api_key=server.management_key, server_url=server.base_url) as admin:
        listed = admin.api_keys.list()
        assert target["hash"] in {k.hash for k in listed.data}
        assert all(isinstance(k.name, str) and k.name for k in listed.data)


def test_good_key_fields_are_normalised(server: Server) -> None:
    workspace = "0df9e665-d932-5740-b2c7-b52af166bc11"  # a workspace id is a uuid
    created = server.create_key("  padded name  ", limit=3, workspace_id=workspace)["data"]
    assert created["name"] == "padded name" and created["limit"] == 3.0
    url = server.base_url + f"/keys/{created['hash']}"
    same = HTTP.patch(url, json={"workspace_id": "default"}, headers=mgmt(server)).json()
    assert same["data"]["updated_at"] is None  # its own workspace: nothing to change
    changes = {"name": " renamed ", "limit": None, "limit_reset": None, "colour": "red"}
    patched = HTTP.patch(url, json=changes, headers=mgmt(server)).json()["data"]
    assert patched["name"] == "renamed" and patched["limit"] is None and "colour" not in patched
    assert patched["limit_remaining"] is None and patched["updated_at"] is not None
    longest = server.create_key("n" * 200)["data"]
    assert longest["name"] == "n" * 200
    with OpenRouter(api_key=server.management_key, server_url=server.base_url) as admin:
        updated = admin.api_keys.update(hash=created["hash"], name="from the sdk", disabled=True)
        assert updated.data.name == "from the sdk" and updated.data.disabled is True
        names = {k.name for k in admin.api_keys.list(include_disabled="true").data}
    assert {"from the sdk", "n" * 200} <= names


def test_usage_survives_a_restart(sims, tmp_path: Path) -> None:
    config = shared_config(sims)
    srv = Server(tmp_path, config)
    key_hash = HTTP.get(srv.base_url + "/key", headers=srv.headers()).json()["data"]["hash"]
    cost = srv.chat("acme/widget-1").json()["usage"]["cost"]
    srv.stop()  # records are flushed on shutdown
    again = Server(tmp_path, config)
    try:
        data = HTTP.get(
            again.base_url + f"/keys/{key_hash}",
            headers={"Authorization": f"Bearer {MANAGEMENT_KEY}"},
        )
        assert data.json()["data"]["usage"] == cost and data.json()["data"]["usage_daily"] == cost
    finally:
        again.stop()


def _listed(server: Server, query: str = "") -> list[str]:
    r = HTTP.get(server.base_url + "/keys" + query, headers=mgmt(server))
    assert r.status_code == 200, (query, r.text)
    return [k["hash"] for k in r.json()["data"]]


def test_list_keys_query(server: Server) -> None:
    """GET /keys: `include_disabled` ("true"/"false"), `offset` (skip that many keys) and
    `workspace_id` (a uuid; every key here is in the installation's one workspace)."""
    off = server.create_key("listed but disabled")["data"]["hash"]
    url = server.base_url + f"/keys/{off}"
    assert HTTP.patch(url, json={"disabled": True}, headers=mgmt(server)).status_code == 200
    on = server.create_key("listed")["data"]["hash"]
    enabled, everything = _listed(server), _listed(server, "?include_disabled=true")
    assert on in enabled and off not in enabled and {on, off} <= set(everything)
    assert _listed(server, "?include_disabled=false") == enabled
    assert _listed(server, "?offset=0") == enabled
    assert _listed(server, "?offset=1") == enabled[1:]
    assert _listed(server, "?include_disabled=true&offset=2") == everything[2:]
    assert _listed(server, f"?offset={len(enabled)}") == []
    assert _listed(server, "?offset=1000000") == []
    # the spec's uuid, but not this installation's workspace (WORKSPACE_ID): no keys there
    assert _listed(server, "?workspace_id=0df9e665-d932-5740-b2c7-b52af166bc11") == []


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("offset=true", "offset"),
        ("offset=1.5", "offset"),
        ("include_disabled=yes", "include_disabled"),
        ("include_disabled=1", "include_disabled"),
        ("include_disabled=TRUE", "include_disabled"),
        ("workspace_id=default", "workspace_id"),
        ("workspace_id=12345", "workspace_id"),
    ],
)
def test_list_keys_bad_query_is_400(server: Server, query: str, name: str) -> None:
    r = HTTP.get(server.base_url + "/keys?" + query, headers=mgmt(server))
    assert r.status_code == 400, r.text
    assert not check(r.json(), "/keys", "get", 400, "application/json")
    assert f"Invalid query parameter '{name}'" in r.json()["error"]["message"]


class CountingRows:
    """A key store that counts how often every row is read."""

    def __init__(self) -> None:
        self.reads = 0

    async def insert(self, row: dict[str, Any]) -> None:
        pass

    async def update(self, key_hash: str, values: dict[str, Any]) -> None:
        pass

    async def delete(self, key_hash: str) -> None:
        pass

    async def all(self) -> list[dict[str, Any]]:
        self.reads += 1
        return []

    async def signature(self) -> tuple[Any, ...]:
        return (self.reads,)  # changed after every read: each refresh reads the rows again


async def test_unknown_tokens_share_one_refresh_at_a_time() -> None:
    """A flood of junk tokens arriving together costs one refresh at a time, shared by
    every token that arrived meanwhile, never one per token in parallel; a token arriving
    after a refresh began waits for the next one (a key created elsewhere works at once)."""
    rows = CountingRows()
    ring = KeyRing(rows)
    await asyncio.gather(*(ring.reload(f"junk-{i}") for i in range(100)))
    assert rows.reads == 1  # all arrived before it began: one refresh serves them all
    await ring.reload("junk")  # after it: a refresh of its own
    assert rows.reads == 2


async def test_a_key_stored_by_another_process_works_at_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    await migrate(engine)
    here, there = KeyRing(KeyStore(engine)), KeyRing(KeyStore(engine))
    for ring in (here, there):
        await ring.load(spend={}, starts=period_starts(datetime.now(UTC)))
    await here.reload("sk-cr-v1-unknown")  # a refresh just happened: no waiting it out
    token, _ = await there.create("elsewhere")
    assert here.authenticate(token) is None
    await here.reload(token)
    assert here.authenticate(token) is not None
    await engine.dispose()
