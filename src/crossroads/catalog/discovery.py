"""Local servers (Ollama, llama.cpp, vLLM, SGLang, LM Studio, `crossroads local`), found by
asking them.

Each local provider's `GET {base_url}/models` is tried; one that answers is usable and its
models join the catalog as `<provider>/<model id>` (unless a catalog model already names
that upstream model for it); one that does not is kept but marked offline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from crossroads.catalog.catalog import Catalog, Model
from crossroads.providers.http import UpstreamClient
from crossroads.schema.catalog import Endpoint, ModelSpec, Provider

log = logging.getLogger("crossroads.discovery")
PROBE_TIMEOUT = 0.5


def _served_ids(payload: Any) -> list[str]:
    rows = payload.get("data") if isinstance(payload, dict) else None
    return [str(r["id"]) for r in rows or [] if isinstance(r, dict) and r.get("id")]


def _local_model(provider: Provider, upstream: str, created: int) -> Model:
    spec = ModelSpec(
        id=f"{provider.slug}/{upstream}",
        name=f"{provider.name}: {upstream}",
        description=f"Served by the local {provider.name} server at {provider.base_url}.",
        endpoints=[
            Endpoint(
                provider=provider.slug,
                upstream_model=upstream,
                pricing={"prompt": "0", "completion": "0"},
            )
        ],
    )
    return Model.build(spec, {provider.slug: provider}, created=created)


def _is_own_address(provider: Provider, own: tuple[str, int]) -> bool:
    parts = urlsplit(provider.base_url or "")
    return (parts.hostname, parts.port) in {
        own,
        ("localhost", own[1]),
        ("127.0.0.1", own[1]),
    } and own[1] > 0


async def _probe(
    provider: Provider, catalog: Catalog, client: UpstreamClient, created: int
) -> None:
    try:
        ids = _served_ids(
            await client.get_json(
                f"{(provider.base_url or '').rstrip('/')}/models", timeout=PROBE_TIMEOUT
            )
        )
    except Exception:  # nothing listens, or something that is not an OpenAI-compatible server
        provider.offline = f"not running: nothing answers at {provider.base_url}"
        return
    if provider.offline:
        log.warning("local provider %s is up at %s", provider.slug, provider.base_url)
    provider.offline = None
    known = {
        e.upstream_model
        for m in catalog.models.values()
        for e in m.endpoints
        if e.provider == provider.slug
    }
    for upstream in ids:
        if upstream not in known:
            catalog.add(_local_model(provider, upstream, created))


async def discover_local(
    catalog: Catalog, client: UpstreamClient, *, own: tuple[str, int], created: int
) -> None:
    """Probe every local provider at once; at most PROBE_TIMEOUT seconds."""
    probes = []
    for provider in catalog.providers.values():
        if not provider.local or provider.config_problem:
            continue
        if _is_own_address(provider, own):
            provider.offline = "its default address is where Crossroads itself listens"
            continue
        probes.append(_probe(provider, catalog, client, created))
    await asyncio.gather(*probes)
