"""The public statistics API under /api/v1/stats: its shapes, its 400s and 404s (the shared
server; the figures themselves are pinned in test_rollups.py and test_live_stats.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from harness import HTTP, Server

PERCENTILES = {"p50", "p75", "p90", "p99"}
WINDOWS = {"5m", "30m", "1d"}
USAGE = {
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost",
}


def stats(server: Server, path: str, status: int = 200) -> Any:
    """A /api/v1/stats read without a key: the routes are public."""
    r = HTTP.get(server.url("/api/v1/stats" + path))
    assert r.status_code == status, r.text
    return r.json()


def today() -> date:
    return datetime.now(UTC).date()


def test_endpoint_statistics_shape(server: Server) -> None:
    r = server.chat("acme/backup", "count me")  # delta: at least one attempt to show
    assert r.status_code == 200
    data = stats(server, "/endpoints/acme/backup")["data"]
    assert data["id"] == "acme/backup" and data["name"] == "Acme: Backup"
    (endpoint,) = data["endpoints"]
    assert set(endpoint) == {
        "id",
        "provider",
        "provider_name",
        "tag",
        "circuit",
        "latency",
        "throughput",
        "uptime",
        "requests",
        "uptime_daily",
        "effective_price",
    }
    assert (endpoint["id"], endpoint["provider"], endpoint["provider_name"], endpoint["tag"]) == (
        "acme/backup@delta",
        "delta",
        "Delta",
        "delta",
    )
    assert endpoint["circuit"] == "closed"
    for name in ("latency", "throughput", "uptime", "requests"):
        assert set(endpoint[name]) == WINDOWS
    assert set(endpoint["latency"]["5m"]) == PERCENTILES
    assert endpoint["latency"]["5m"]["p50"] <= endpoint["latency"]["5m"]["p99"]
    assert endpoint["requests"]["5m"] >= 1 and endpoint["uptime"]["5m"] == 100.0
    assert endpoint["requests"]["1d"] >= endpoint["requests"]["5m"]
    daily = endpoint["uptime_daily"]
    assert [d["date"] for d in daily] == [
        (today() - timedelta(days=back)).isoformat() for back in range(29, -1, -1)
    ]
    assert set(daily[-1]) == {"date", "uptime", "requests"} and daily[-1]["requests"] >= 1
    price = endpoint["effective_price"]
    assert set(price) == {"prompt", "completion", "prompt_tokens", "completion_tokens"}
    assert price["prompt_tokens"] > 0
    assert price["prompt"] == pytest.approx(5.0)  # the endpoint's 5 USD per million, billed


def test_an_endpoint_without_traffic_has_empty_figures(server: Server) -> None:
    (endpoint,) = stats(server, "/endpoints/acme/locked")["data"]["endpoints"]
    assert endpoint["latency"] == {"5m": None, "30m": None, "1d": None}
    assert endpoint["uptime"] == {"5m": None, "30m": None, "1d": None}
    assert endpoint["requests"] == {"5m": 0, "30m": 0, "1d": 0}
    assert endpoint["effective_price"] is None
    assert {d["requests"] for d in endpoint["uptime_daily"]} == {0}


def test_daily_usage_shape(server: Server) -> None:
    data = stats(server, "/models/acme/trio/daily?days=3")["data"]
    assert data["model"] == "acme/trio"
    assert [d["date"] for d in data["days"]] == [
        (today() - timedelta(days=back)).isoformat() for back in (2, 1, 0)
    ]
    assert all(set(d) == USAGE | {"date"} for d in data["days"])
    assert len(stats(server, "/models/acme/trio/daily")["data"]["days"]) == 30


def test_apps_and_rankings_shape(server: Server) -> None:
    data = stats(server, "/apps?month=2020-02")["data"]
    assert data == {"month": "2020-02", "model": None, "apps": []}
    data = stats(server, "/apps?model=acme/trio")["data"]
    assert data["month"] == today().strftime("%Y-%m") and data["model"] == "acme/trio"
    assert all(
        set(a) == USAGE | {"app", "model"} and a["model"] == "acme/trio" for a in data["apps"]
    )
    week = stats(server, "/rankings")["data"]
    assert week["week"] == (today() - timedelta(days=today().weekday())).isoformat()
    ranks = [m["rank"] for m in week["models"]]
    assert ranks == list(range(1, len(ranks) + 1))
    assert all(set(m) == USAGE | {"rank", "model"} for m in week["models"])
    tokens = [m["total_tokens"] for m in week["models"]]
    assert tokens == sorted(tokens, reverse=True)
    assert stats(server, "/rankings?week=2020-03-02")["data"] == {
        "week": "2020-03-02",
        "models": [],
    }


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/models/acme/trio/daily?days=0", "days"),
        ("/models/acme/trio/daily?days=367", "days"),
        ("/models/acme/trio/daily?days=many", "days"),
        ("/apps?month=2026-13", "month"),
        ("/apps?month=2026-1", "month"),
        ("/apps?month=May", "month"),
        ("/apps?model=", "model"),
        ("/rankings?week=2026-03-10", "week"),  # a Tuesday
        ("/rankings?week=2026-02-30", "week"),
        ("/rankings?week=20260309", "week"),
        ("/apps?month=9999-12", "month"),  # its last day is fine, the day after is not
        ("/rankings?week=9999-12-27", "week"),  # a Monday whose Sunday is past year 9999
    ],
)
def test_bad_query_values_are_400s(server: Server, path: str, named: str) -> None:
    body = stats(server, path, 400)
    assert body["error"]["code"] == 400 and f"'{named}'" in body["error"]["message"]


def test_a_monday_is_asked_for(server: Server) -> None:
    body = stats(server, "/rankings?week=2026-03-10", 400)
    assert "Tuesday" in body["error"]["message"] and "Monday" in body["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/endpoints/acme/nope", "/models/acme/nope/daily", "/apps?model=acme/nope"]
)
def test_unknown_models_are_404s(server: Server, path: str) -> None:
    body = stats(server, path, 404)
    assert body["error"]["code"] == 404 and "acme/nope" in body["error"]["message"]
