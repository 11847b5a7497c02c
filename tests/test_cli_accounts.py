"""`crossroads keys` and `crossroads credits`, run as subprocesses on the server's database."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness import BIN, HTTP, MANAGEMENT_KEY, Server

ENV = {k: v for k, v in os.environ.items() if not k.startswith("CROSSROADS_")}


def crossroads(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, timeout=60, input=stdin, env=ENV
    )


class Cli:
    """The operator commands against one database (SQLite in a data folder, or PostgreSQL)."""

    def __init__(self, data: Path, database: str | None = None) -> None:
        self.data = data
        self.flags = ["--data-dir", str(data)] + (["--database", database] if database else [])

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return crossroads(*args, *self.flags, stdin=stdin)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        out = self.run(*args, stdin=stdin)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def create(self, name: str, *options: str) -> tuple[str, str]:
        """A new key: (the key, its hash), read from the plain output."""
        lines = self.ok("keys", "create", name, *options).splitlines()
        token = next(line.split()[1] for line in lines if line.startswith("key:"))
        key_hash = next(line.split()[1] for line in lines if line.startswith("hash:"))
        assert hashlib.sha256(token.encode()).hexdigest() == key_hash
        return token, key_hash

    def listed(self, *flags: str) -> dict[str, dict[str, Any]]:
        return {k["hash"]: k for k in self.json("keys", "list", *flags)["data"]}


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    if request.param == "postgres":
        return Cli(tmp_path / "data", request.getfixturevalue("postgres_url"))
    return Cli(tmp_path / "data")


@pytest.fixture
def lite(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "data")


EVERY_OPTION = (
    "--limit",
    "2.5",
    "--limit-reset",
    "weekly",
    "--rpm",
    "30",
    "--tpm",
    "5000",
    "--allow-model",
    "acme/widget-1",
    "--allow-model",
    "acme/gadget:free",
    "--allow-provider",
    "alpha",
    "--zdr",
    "--deny-data-collection",
    "--max-tokens",
    "256",
    "--expires",
    "2099-01-02T03:04:05Z",
)


def test_keys_lifecycle(cli: Cli) -> None:
    assert cli.json("keys", "list", "--all") == {"data": []}
    out = cli.ok("keys", "create", "ops team", *EVERY_OPTION)
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("key:"))
    assert token.startswith("sk-cr-v1-") and out.count(token) == 1
    key_hash = hashlib.sha256(token.encode()).hexdigest()
    assert f"hash:  {key_hash}" in out

    shown = cli.json("keys", "show", key_hash[:8])["data"]
    assert shown == cli.json("keys", "show", key_hash)["data"]
    assert shown["hash"] == key_hash and shown["name"] == "ops team"
    assert shown["label"] == f"{token[:12]}...{token[-4:]}" and token not in json.dumps(shown)
    assert shown["disabled"] is False and shown["usage"] == 0
    assert shown["limit"] == 2.5 and shown["limit_remaining"] == 2.5
    assert shown["limit_reset"] == "weekly"
    assert shown["requests_per_minute"] == 30 and shown["tokens_per_minute"] == 5000
    assert shown["guardrails"] == {
        "allowed_models": ["acme/widget-1", "acme/gadget:free"],
        "allowed_providers": ["alpha"],
        "zdr": True,
        "data_collection": "deny",
        "max_tokens": 256,
    }
    assert datetime.fromisoformat(shown["expires_at"]) == datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)

    created = cli.json("keys", "create", "plain")
    plain_hash = created["data"]["hash"]
    assert hashlib.sha256(created["key"].encode()).hexdigest() == plain_hash
    plain = cli.listed()[plain_hash]
    assert plain == created["data"]
    assert plain["guardrails"] is None and plain["limit"] is None and plain["expires_at"] is None
    assert plain["requests_per_minute"] is None and plain["tokens_per_minute"] is None
    assert cli.listed()[key_hash] == shown

    text = cli.ok("keys", "list")
    assert key_hash[:12] in text and plain_hash[:12] in text and "ops team" in text
    assert "models=acme/widget-1,acme/gadget:free" in text and "zdr" in text and "2.5" in text
    details = cli.ok("keys", "show", key_hash[:10])
    assert key_hash in details and "weekly" in details and "max_tokens=256" in details

    assert "disabled" in cli.ok("keys", "disable", key_hash[:8])
    assert set(cli.listed()) == {plain_hash}
    assert cli.listed("--all")[key_hash]["disabled"] is True
    assert "already disabled" in cli.ok("keys", "disable", key_hash)
    assert "enabled" in cli.ok("keys", "enable", key_hash)
    assert cli.listed()[key_hash]["disabled"] is False

    refused = cli.run("keys", "delete", key_hash, stdin="n\n")
    assert refused.returncode == 1 and "Aborted" in refused.stderr
    assert key_hash in cli.listed()
    assert "deleted" in cli.ok("keys", "delete", key_hash[:8], stdin="y\n")
    assert "deleted" in cli.ok("keys", "delete", plain_hash, "--yes")
    assert cli.listed("--all") == {}
    gone = cli.run("keys", "show", key_hash)
    assert gone.returncode == 1 and "no API key" in gone.stderr


def test_management_keys_are_out_of_reach(lite: Cli) -> None:
    lite.ok("keys", "rotate-management")
    management = hashlib.sha256(
        (lite.data / "management-key").read_text().strip().encode()
    ).hexdigest()
    _, key_hash = lite.create("user")
    assert set(lite.listed("--all")) == {key_hash}
    for command in (("show",), ("disable",), ("enable",), ("delete", "--yes")):
        out = lite.run("keys", command[0], management, *command[1:])
        assert out.returncode == 1 and "no API key" in out.stderr, command
    with sqlite3.connect(lite.data / "crossroads.db") as db:
        stored = db.execute(
            "SELECT disabled FROM api_keys WHERE hash = ?", (management,)
        ).fetchall()
    assert stored == [(0,)]


BAD_CREATES = [
    (("k", "--limit", "-1"), "--limit"),
    (("k", "--limit", "nan"), "--limit"),
    (("k", "--limit", "inf"), "--limit"),
    (("k", "--limit", "lots"), "--limit"),
    (("k", "--limit", "9000000.01"), "--limit"),
    (("k", "--limit-reset", "yearly"), "--limit-reset"),
    (("k", "--rpm", "0"), "--rpm"),
    (("k", "--tpm", "many"), "--tpm"),
    (("k", "--tpm", str(2**31)), "--tpm"),
    (("k", "--max-tokens", "0"), "--max-tokens"),
    (("k", "--expires", "2020-01-01T00:00:00Z"), "in the past"),
    (("k", "--expires", "2099-01-01T00:00:00"), "UTC"),
    (("k", "--expires", "2099-01-01T00:00:00+02:00"), "UTC"),
    (("k", "--expires", "soon"), "ISO 8601"),
    (("   ",), "must not be empty"),
    (("a\x07b",), "control characters"),
    (("n" * 201,), "longer than 200"),
    (("k", "--allow-model", " "), "--allow-model"),
    (("k", "--allow-provider", "x\x1b"), "--allow-provider"),
    (("k", "--allow-provider", "p" * 201), "--allow-provider"),
    (("k", *[a for i in range(101) for a in ("--allow-model", f"m/{i}")]), "at most 100"),
    (("k", "--colour", "red"), "No such option"),
]


def test_create_refuses_bad_input(lite: Cli) -> None:
    assert lite.listed("--all") == {}  # the database exists: a bad create would write to it
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda bad: lite.run("keys", "create", *bad[0]), BAD_CREATES))
    for (args, message), out in zip(BAD_CREATES, outs, strict=True):
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert "sk-cr-v1-" not in out.stdout + out.stderr
    assert lite.listed("--all") == {}


def test_guardrails_are_built_as_the_api_builds_them(lite: Cli) -> None:
    options = ("--allow-model", "Acme/Widget", "--allow-model", " acme/widget ", "--limit", "9e6")
    data = lite.json("keys", "create", "k", *options)["data"]
    assert data["guardrails"]["allowed_models"] == ["Acme/Widget"]  # kept once, case aside
    assert data["limit"] == 9_000_000


def test_rotate_names_the_environment_variable(lite: Cli) -> None:
    env = {**ENV, "CROSSROADS_MANAGEMENT_KEY": "sk-cr-v1-" + "e" * 64}
    out = subprocess.run(
        [str(BIN), "keys", "rotate-management", *lite.flags],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "CROSSROADS_MANAGEMENT_KEY is set" in out.stdout


def test_hash_references(lite: Cli) -> None:
    lite.create("someone")  # migrates the database
    for bad in ("abc1234", "not-a-hash", "a" * 65):
        out = lite.run("keys", "show", bad)
        assert out.returncode == 2 and "8 or more hex characters" in out.stderr
    now = datetime.now(UTC).isoformat()
    with sqlite3.connect(lite.data / "crossroads.db") as db:
        for key_hash in ("abcdef01" + "0" * 56, "abcdef01" + "1" * 56):
            db.execute(
                "INSERT INTO api_keys (hash, name, label, is_management, disabled,"
                " include_byok_in_limit, created_at) VALUES (?, 'twin', 'sk-cr-...', 0, 0, 0, ?)",
                (key_hash, now),
            )
    out = lite.run("keys", "show", "ABCDEF01")
    assert out.returncode == 1 and "2 API keys" in out.stderr
    assert lite.json("keys", "show", "abcdef010")["data"]["hash"] == "abcdef01" + "0" * 56
    missing = lite.run("keys", "disable", "0123456789")
    assert missing.returncode == 1 and "no API key with hash 0123456789" in missing.stderr


def test_credits_are_exact(cli: Cli) -> None:
    empty = cli.json("credits", "show")["data"]
    assert empty == {
        "total_credits": 0,
        "total_usage": 0,
        "balance": 0,
        "enforced": False,
        "entries": [],
    }
    assert "enforced:      no" in cli.ok("credits", "show")
    first = cli.ok("credits", "add", "0.1", "--note", "first top-up")
    assert "Added 0.1 USD" in first and "total credits: 0.1\n" in first
    second = cli.ok("credits", "add", "0.2")
    assert "total credits: 0.3\n" in second and "balance:       0.3\n" in second
    shown = cli.json("credits", "show")["data"]
    assert shown["total_credits"] == 0.3 and shown["balance"] == 0.3
    assert shown["total_usage"] == 0 and shown["enforced"] is True
    assert [(e["kind"], e["amount"], e["note"]) for e in shown["entries"]] == [
        ("credit", 0.2, None),
        ("credit", 0.1, "first top-up"),
    ]
    assert all(datetime.fromisoformat(e["created_at"]).tzinfo for e in shown["entries"])
    cli.ok("credits", "add", "0.000000000001")
    text = cli.ok("credits", "show")
    assert "total credits: 0.300000000001\n" in text and "enforced:      yes\n" in text
    assert "first top-up" in text


def test_credits_show_lists_the_last_ten_entries(lite: Cli) -> None:
    lite.ok("credits", "add", "100", "--note", "top-up")
    charges = [10**9 * (i + 1) for i in range(12)]
    with sqlite3.connect(lite.data / "crossroads.db") as db:  # what the server charged
        db.executemany(
            "INSERT INTO ledger (created_at, kind, amount, generation_id, api_key_hash)"
            " VALUES (?, 'charge', ?, ?, ?)",
            [
                (f"2099-01-01 00:00:{i:02d}.000000", amount, f"gen-{i}", "ab" * 32)
                for i, amount in enumerate(charges)
            ],
        )
        high, low = divmod(sum(charges), 2**32)  # the totals the server keeps with its inserts
        db.execute(
            "UPDATE ledger_totals SET high = high + ?, low = low + ?, rows = rows + ?"
            " WHERE kind = 'charge'",
            (high, low, len(charges)),
        )
    shown = lite.json("credits", "show")["data"]
    assert shown["total_usage"] == 0.078 and shown["balance"] == 99.922
    assert [e["generation_id"] for e in shown["entries"]] == [f"gen-{i}" for i in range(11, 1, -1)]
    assert shown["entries"][0] == {
        "id": 13,
        "created_at": "2099-01-01T00:00:11+00:00",
        "kind": "charge",
        "amount": 0.012,
        "generation_id": "gen-11",
        "api_key_hash": "ab" * 32,
        "note": None,
    }
    text = lite.ok("credits", "show")
    assert "total usage:   0.078\n" in text and "-0.012" in text and "generation gen-11" in text
    assert "top-up" not in text  # older than the last ten


def test_credits_add_refuses_bad_amounts(lite: Cli) -> None:
    assert lite.json("credits", "show")["data"]["entries"] == []
    amounts = ("0", "-1", "abc", "nan", "inf", "0.0000000000001", "1e400", "", "1" + "0" * 7)
    with ThreadPoolExecutor(2) as pool:
        outs = pool.map(lambda a: crossroads("credits", "add", *lite.flags, "--", a), amounts)
    for amount, out in zip(amounts, outs, strict=True):
        assert out.returncode == 2 and "AMOUNT" in out.stderr, (amount, out.stderr)
    assert lite.json("credits", "show")["data"]["entries"] == []


def test_credits_add_refuses_a_bad_note(lite: Cli) -> None:
    for note in ("a\nb", "x" * 501):
        out = lite.run("credits", "add", "1", "--note", note)
        assert out.returncode == 2 and "--note" in out.stderr
    assert lite.json("credits", "show")["data"]["total_credits"] == 0


def test_config_enforces_the_balance(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("credits:\n  enforce: true\n")
    cli = Cli(tmp_path / "data")
    cli.flags += ["--config", str(config)]
    shown = cli.json("credits", "show")["data"]
    assert shown["enforced"] is True and shown["total_credits"] == 0
    assert "the config enforces it" in cli.ok("credits", "show")
    config.write_text("credits:\n  enforce: sometimes\n")
    out = cli.run("credits", "show")
    assert out.returncode == 1 and "credits.enforce" in out.stderr


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long `check` took to hold; fails after `seconds`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the time"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_running_server_sees_the_commands(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'data' / 'crossroads.db'}"
    )
    srv = Server(tmp_path, {"providers": [], "models": []}, "--database", url)
    try:
        cli = Cli(tmp_path / "data", url)
        token, key_hash = cli.create("from the cli", "--rpm", "7")

        def status() -> int:
            return HTTP.get(srv.base_url + "/key", headers=srv.headers(token)).status_code

        within(2.0, lambda: status() == 200)
        data = HTTP.get(srv.base_url + "/key", headers=srv.headers(token)).json()["data"]
        assert data["hash"] == key_hash and data["name"] == "from the cli"
        cli.ok("keys", "disable", key_hash)
        within(2.0, lambda: status() == 401)
        cli.ok("keys", "enable", key_hash)
        within(2.0, lambda: status() == 200)
        cli.ok("keys", "delete", key_hash, "--yes")
        within(2.0, lambda: status() == 401)

        admin = {"Authorization": f"Bearer {MANAGEMENT_KEY}"}
        cli.ok("credits", "add", "12.5")

        def credited() -> bool:
            r = HTTP.get(srv.base_url + "/credits", headers=admin)
            return r.status_code == 200 and r.json()["data"]["total_credits"] == 12.5

        within(2.0, credited)
    finally:
        srv.stop()
