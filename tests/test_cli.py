"""The `crossroads` command, run as a subprocess."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import subprocess
from pathlib import Path

import httpx

from harness import BIN, Simulator


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=60)


def test_help_lists_commands() -> None:
    out = run("--help")
    assert out.returncode == 0 and "serve" in out.stdout and "simulate" in out.stdout
    serve = run("serve", "--help").stdout
    for flag in ("--config", "--host", "--port", "--database"):
        assert flag in serve
    simulate = run("simulate", "--help").stdout
    for flag in (
        "--latency-ms",
        "--tokens-per-second",
        "--fail-rate",
        "--status",
        "--die-after-chunks",
    ):
        assert flag in simulate


def test_serve_rejects_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  - id: a/b\n    endpoints:\n      - provider: nobody\n")
    out = run("serve", "--config", str(config), "--data-dir", str(tmp_path))
    assert out.returncode != 0 and "unknown provider 'nobody'" in out.stderr
    config.write_text("providers: [\n")
    out = run("serve", "--config", str(config))
    assert out.returncode != 0 and "cannot read config" in out.stderr
    config.write_text("colours: []\n")
    assert "unknown top-level keys" in run("serve", "--config", str(config)).stderr


def test_simulate_flags_shape_the_provider() -> None:
    sim = Simulator("flaky", "--fail-rate", "1", "--status", "429")
    try:
        r = httpx.post(
            sim.url("/v1/chat/completions"), json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["message"] == "flaky simulated failure"
    finally:
        sim.stop()
    sim = Simulator("steady", "--latency-ms", "150", "--tokens-per-second", "50")
    try:
        r = httpx.post(
            sim.url("/v1/chat/completions"), json={"messages": [{"role": "user", "content": "a b"}]}
        )
        assert r.json()["choices"][0]["message"]["content"] == "steady says: a b"
        assert r.elapsed.total_seconds() >= 0.15
        assert sim.state()["behaviour"]["tokens_per_second"] == 50
    finally:
        sim.stop()


def management_hashes(data: Path) -> list[str]:
    with sqlite3.connect(data / "crossroads.db") as db:
        return [r[0] for r in db.execute("SELECT hash FROM api_keys WHERE is_management")]


def test_keys_rotate_management_writes_a_private_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    key_file = data / "management-key"
    elsewhere = tmp_path / "not-yours"
    elsewhere.write_text("keep me\n")
    key_file.symlink_to(elsewhere)  # a link planted at the key's name is replaced, not followed
    assert "rotate-management" in run("keys", "--help").stdout
    first = run("keys", "rotate-management", "--data-dir", str(data))
    assert first.returncode == 0, first.stderr
    assert str(key_file) in first.stdout
    assert not key_file.is_symlink() and elsewhere.read_text() == "keep me\n"
    key = key_file.read_text().strip()
    assert key.startswith("sk-cr-v1-") and key not in first.stdout + first.stderr
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert management_hashes(data) == [hashlib.sha256(key.encode()).hexdigest()]
    second = run("keys", "rotate-management", "--data-dir", str(data))
    assert second.returncode == 0, second.stderr
    rotated = key_file.read_text().strip()
    assert rotated != key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert management_hashes(data) == [hashlib.sha256(rotated.encode()).hexdigest()]
    assert sorted(p.name for p in data.iterdir() if "management" in p.name) == [
        "management-key"
    ]  # no temporary file left behind
