"""Shared fixtures: four simulated providers and one Crossroads server in front of them.

Catalog of the shared server (prices are USD per million tokens, prompt/completion):
- acme/widget-1: alpha only (the config shape from the README)
- acme/trio: alpha 1/1 fp8 zdr, beta 2/2 bf16 trains on data, gamma 3/3 mxfp4 no tools
- acme/backup: delta only
- acme/locked: a provider whose key is missing
- acme/ghostly: ghost (nothing listens there) 0.5/0.5, delta 5/5
- acme/open: alpha, taking every parameter
- acme/flash: gem, the Gemini protocol (served by beta's simulator)
- acme/sonnet: claude, the Anthropic protocol (served by gamma's simulator)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness import (
    POSTGRES,
    Server,
    Simulator,
    drop_postgres,
    endpoint,
    free_port,
    provider,
    temporary_postgres,
)

pytest_plugins = ("browser",)  # the website's browser fixtures (tests/browser.py)

ALL_PARAMS = [
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
]


@pytest.fixture(scope="session")
def sims() -> Iterator[dict[str, Simulator]]:
    started = {name: Simulator(name) for name in ("alpha", "beta", "gamma", "delta")}
    yield started
    for sim in started.values():
        sim.stop()


def shared_config(sims: dict[str, Simulator]) -> dict:
    return {
        "server": {"stream_keepalive_seconds": 0.2, "max_body_bytes": 200_000},
        "providers": [
            provider(
                "alpha", sims["alpha"], data_policy={"training": False, "retains_prompts": False}
            ),
            provider(
                "beta",
                sims["beta"],
                data_policy={"training": True, "retains_prompts": True},
                timeout_seconds=1.0,
            ),
            provider(
                "gamma", sims["gamma"], data_policy={"training": False, "retains_prompts": True}
            ),
            provider(
                "delta",
                sims["delta"],
                api_key="delta-secret",
                quirks={
                    "headers": {"X-Team": "crossroads"},
                    "auth_header": "Api-Key",
                    "auth_scheme": "Token",
                    "drop_params": ["seed"],
                    "rename_params": {"max_completion_tokens": "max_tokens"},
                },
            ),
            {
                "slug": "locked",
                "name": "Locked",
                "api": "openai",
                "base_url": sims["delta"].url(),
                "api_key_env": "LOCKED_TEST_API_KEY",
            },
            {
                "slug": "claude",
                "name": "Claude",
                "api": "anthropic",
                "base_url": sims["gamma"].url(""),
                "api_key": "anthropic-secret",
            },
            {
                "slug": "gem",
                "name": "Gem",
                "api": "gemini",
                "base_url": sims["beta"].url("/v1beta"),
                "api_key": "gemini-secret",
            },
            {
                "slug": "ghost",
                "name": "Ghost",
                "api": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
            },
        ],
        "models": [
            {
                "id": "acme/widget-1",
                "name": "Acme: Widget 1",
                "context_length": 32768,
                "endpoints": [
                    {
                        "provider": "alpha",
                        "upstream_model": "mock-model",
                        "context_length": 32768,
                        "max_completion_tokens": 4096,
                        "quantization": "fp8",
                        "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                        "supported_parameters": [
                            "max_tokens",
                            "temperature",
                            "tools",
                            "tool_choice",
                        ],
                    }
                ],
            },
            {
                "id": "acme/trio",
                "name": "Acme: Trio",
                "endpoints": [
                    endpoint(
                        "alpha",
                        1,
                        1,
                        quantization="fp8",
                        context_length=4096,
                        max_completion_tokens=1024,
                        supported_parameters=ALL_PARAMS,
                    ),
                    endpoint(
                        "beta",
                        2,
                        2,
                        quantization="bf16",
                        context_length=32768,
                        max_completion_tokens=8192,
                        supported_parameters=[p for p in ALL_PARAMS if p != "temperature"],
                    ),
                    endpoint(
                        "gamma",
                        3,
                        3,
                        quantization="mxfp4",
                        context_length=131072,
                        max_completion_tokens=16384,
                        supported_parameters=["max_tokens", "temperature", "stop"],
                    ),
                ],
            },
            {"id": "acme/backup", "name": "Acme: Backup", "endpoints": [endpoint("delta", 5, 5)]},
            {"id": "acme/locked", "name": "Acme: Locked", "endpoints": [endpoint("locked", 1, 1)]},
            {
                "id": "acme/open",
                "name": "Acme: Open (OpenAI wire protocol, every parameter)",
                "endpoints": [endpoint("alpha", 1, 2, supported_parameters=None)],
            },
            {
                "id": "acme/flash",
                "name": "Acme: Flash (Gemini wire protocol)",
                "endpoints": [endpoint("gem", 0.3, 2.5, supported_parameters=None)],
            },
            {
                "id": "acme/sonnet",
                "name": "Acme: Sonnet (Anthropic wire protocol)",
                "endpoints": [endpoint("claude", 3, 15, supported_parameters=None)],
            },
            {
                "id": "acme/ghostly",
                "name": "Acme: Ghostly",
                "endpoints": [endpoint("ghost", 0.5, 0.5), endpoint("delta", 5, 5)],
            },
        ],
    }


@pytest.fixture(scope="session")
def server(
    sims: dict[str, Simulator], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # circuits off: one test's failing endpoints must not reorder the next test's routes
    # (circuits have their own tests, with their own servers)
    srv = Server(
        tmp_path_factory.mktemp("shared"),
        shared_config(sims),
        env={"CROSSROADS_CIRCUIT_FAILURES": "0"},
    )
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _calm_simulators(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts with healthy, instant simulators."""
    yield
    if "sims" in request.fixturenames:
        for sim in request.getfixturevalue("sims").values():
            sim.reset()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own for one test, dropped after it."""
    if not POSTGRES:
        pytest.skip("CROSSROADS_TEST_POSTGRES_URL is not set (make test sets it)")
    url, name = asyncio.run(temporary_postgres())
    yield url
    asyncio.run(drop_postgres(name))
