"""The free tier through a real server with small settings: 3 requests a minute per key and
5 a day per account to free variants (`:free`), 429s with OpenRouter's rate-limit headers,
the account's day counter shared by every key, and GET /key showing the real numbers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from harness import Server, Simulator
from limits_setup import SERVER, chat_body, fresh_minute, message, paid_catalog, start

FREE = "acme/paid:free"


def config(sims: dict[str, Simulator]) -> dict[str, Any]:
    settings = {**SERVER, "free_requests_per_minute": 3, "free_requests_per_day": 5}
    return {"server": settings, **paid_catalog(sims)}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("free")


@pytest.fixture(scope="module")
def srv(sims: dict[str, Simulator], home: Path) -> Iterator[Server]:
    server = start(home, config(sims))
    yield server
    server.stop()


def free_numbers(srv: Server, key: str | None = None) -> dict[str, Any]:
    return srv.get("/key", key=key).json()["data"]["free_model_daily_requests"]


def ask_free(srv: Server, key: str | None = None) -> httpx.Response:
    return srv.post("/chat/completions", chat_body(FREE, max_tokens=5), key=key)


def assert_rate_headers(r: httpx.Response, *, limit: int, reset_by: float) -> None:
    """OpenRouter's headers on a 429: the limit, nothing remaining, when it resets (epoch
    ms, no later than `reset_by`) and Retry-After in seconds up to then."""
    assert r.headers["x-ratelimit-limit"] == str(limit)
    assert r.headers["x-ratelimit-remaining"] == "0"
    reset = int(r.headers["x-ratelimit-reset"]) / 1000
    assert time.time() - 1 < reset <= reset_by
    assert 1 <= int(r.headers["retry-after"]) <= reset - time.time() + 2


def test_free_tier_per_minute_per_day_and_get_key(srv: Server) -> None:
    other = srv.create_key("second key of the account")["key"]
    me = srv.get("/key").json()["data"]
    assert me["is_free_tier"] is True
    assert me["rate_limit"]["requests"] == 3 and me["rate_limit"]["interval"] == "1m"
    assert me["free_model_daily_requests"] == {"limit": 5, "remaining": 5, "used": 0}

    fresh_minute()
    minute_end = (time.time() // 60 + 1) * 60
    for used in (1, 2, 3):
        r = ask_free(srv)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["cost"] == 0
        assert free_numbers(srv) == {"limit": 5, "remaining": 5 - used, "used": used}
    fourth = ask_free(srv)
    assert fourth.status_code == 429
    text = message(fourth.json())
    assert "free-models-per-min" in text and "3 requests a minute" in text, text
    assert fourth.json()["error"]["metadata"]["limit"] == "free-per-minute"
    assert_rate_headers(fourth, limit=3, reset_by=minute_end)
    client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=FREE, messages=[{"role": "user", "content": "x"}])
    assert "free-models-per-min" in limited.value.message
    assert free_numbers(srv)["used"] == 3  # refused requests are not counted
    # paid models have no such cap
    assert srv.chat("acme/paid", max_tokens=5).status_code == 200

    # the day's cap is the account's: the second key has 2 left
    assert free_numbers(srv, other) == {"limit": 5, "remaining": 2, "used": 3}
    for used in (4, 5):
        assert ask_free(srv, other).status_code == 200
        assert free_numbers(srv, other)["used"] == used
    sixth = ask_free(srv, other)
    assert sixth.status_code == 429
    text = message(sixth.json())
    assert "free-models-per-day" in text and "5 requests a day" in text, text
    assert sixth.json()["error"]["metadata"]["limit"] == "free-per-day"
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert_rate_headers(sixth, limit=5, reset_by=(midnight + timedelta(days=1)).timestamp())
    claude = anthropic.Anthropic(base_url=srv.url("/api"), api_key=other, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as refused:
        claude.messages.create(
            model=FREE, max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert "free-models-per-day" in refused.value.message
    assert free_numbers(srv) == free_numbers(srv, other) == {"limit": 5, "remaining": 0, "used": 5}


def test_the_day_count_survives_a_restart(
    srv: Server, sims: dict[str, Simulator], home: Path
) -> None:
    ask_free(srv, srv.create_key("before the restart")["key"])  # 429 once the day's are used
    used = free_numbers(srv)["used"]
    assert used > 0
    srv.stop()
    again = start(home, config(sims))
    try:
        assert free_numbers(again)["used"] == used
        if used >= 5:
            assert ask_free(again).status_code == 429
    finally:
        again.stop()
