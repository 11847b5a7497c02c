"""API keys and the management key, through the server and the openrouter SDK."""

from __future__ import annotations

import hashlib
from pathlib import Path

from openrouter import OpenRouter

from conftest import shared_config
from harness import HTTP, MANAGEMENT_KEY, Server


def mgmt(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.management_key}"}


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


def test_generated_management_key_is_shown_once_and_stored_hashed(sims, tmp_path: Path) -> None:
    config = shared_config(sims)
    output = Server(tmp_path, config, management_key=None).stop()
    generated = next(
        line.strip() for line in output.splitlines() if line.strip().startswith("sk-cr-v1-")
    )
    assert "A management key was generated" in output and "listening on" in output
    database = (tmp_path / "data" / "crossroads.db").read_bytes()
    assert generated.encode() not in database
    assert hashlib.sha256(generated.encode()).hexdigest().encode() in database

    second = Server(tmp_path, config, management_key=None)
    second.management_key = generated
    try:
        user_key = second.create_key("after restart")["key"]
        assert (
            second.post(
                "/chat/completions",
                {"model": "acme/widget-1", "messages": [{"role": "user", "content": "x"}]},
                key=user_key,
            ).status_code
            == 200
        )
    finally:
        output = second.stop()
    assert "A management key was generated" not in output and generated not in output


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
