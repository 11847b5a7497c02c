"""GET /openapi.json: the OpenAPI document of this server.

It is OpenRouter's own spec (`data/openrouter-openapi.yaml`, MIT, its `info` block kept)
cut down to the paths and methods this server routes and the components they reference,
with `servers` naming this server. It is built once per app, in a worker thread on the
first request, and kept on the app's state as bytes; each answer only prepends `servers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any

import orjson
import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from crossroads.api.http import JSON

SPEC = "data/openrouter-openapi.yaml"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_TOP_LEVEL = ("openapi", "info", "externalDocs", "security")


def served_operations(routes: Iterable[BaseRoute]) -> dict[str, set[str]]:
    """The lowercase methods routed at each path, relative to the mounts (the API's own
    paths, e.g. `/models/{author}/{slug}/endpoints`); HEAD only when it is routed alone."""
    served: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Mount):
            for path, methods in served_operations(route.routes).items():
                served.setdefault(path, set()).update(methods)
        elif isinstance(route, Route) and route.methods:
            methods = {m.lower() for m in route.methods}
            if "get" in methods:
                methods.discard("head")  # Starlette adds HEAD to every GET route
            served.setdefault(route.path, set()).update(methods)
    return served


def _refs(node: Any) -> Iterator[str]:
    """Every `$ref` under `node`, and every schema a discriminator maps a value to."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "discriminator" and isinstance(value, dict):
                yield from (v for v in (value.get("mapping") or {}).values() if isinstance(v, str))
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _referenced_components(spec: Mapping[str, Any], roots: Any) -> dict[str, dict[str, Any]]:
    """The components `roots` reference, transitively, by section (`schemas`, ...)."""
    components = spec.get("components") or {}
    kept: dict[str, dict[str, Any]] = {}
    pending = list(_refs(roots))
    while pending:
        ref = pending.pop()
        parts = ref.split("/")
        if len(parts) != 4 or parts[:2] != ["#", "components"]:
            continue  # only local component references exist in the spec
        section, name = parts[2], parts[3]
        if name in kept.get(section, {}) or name not in (components.get(section) or {}):
            continue
        value = components[section][name]
        kept.setdefault(section, {})[name] = value
        pending.extend(_refs(value))
    return kept


def subset(spec: Mapping[str, Any], served: Mapping[str, set[str]]) -> dict[str, Any]:
    """`spec` reduced to the operations in `served` and what they need; no `servers`."""
    paths: dict[str, Any] = {}
    for path, item in (spec.get("paths") or {}).items():
        methods = served.get(path, set())
        kept = {k: v for k, v in item.items() if k not in _METHODS or k in methods}
        if any(k in methods for k in item):
            paths[path] = kept
    document = {k: spec[k] for k in _TOP_LEVEL if k in spec}
    used_tags = {
        tag
        for item in paths.values()
        for method, operation in item.items()
        if method in _METHODS
        for tag in operation.get("tags") or []
    }
    document["tags"] = [t for t in spec.get("tags") or [] if t.get("name") in used_tags]
    document["paths"] = paths
    components = _referenced_components(spec, [paths, spec.get("security")])
    # security requirements name their schemes without a `$ref`
    schemes = (spec.get("components") or {}).get("securitySchemes") or {}
    for requirement in spec.get("security") or []:
        for name in requirement:
            if name in schemes:
                components.setdefault("securitySchemes", {})[name] = schemes[name]
    document["components"] = components
    return document


def load_spec() -> dict[str, Any]:
    """OpenRouter's OpenAPI document, as shipped inside this package."""
    text = resources.files("crossroads.api").joinpath(SPEC).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec: dict[str, Any] = yaml.load(text, Loader=loader)
    return spec


def build_document(served: Mapping[str, set[str]]) -> bytes:
    """The served document without `servers`, as a JSON object."""
    return orjson.dumps(subset(load_spec(), served), option=orjson.OPT_NON_STR_KEYS)


async def _document(request: Request) -> bytes:
    state = request.app.state
    task: asyncio.Future[bytes] | None = getattr(state, "openapi_document", None)
    if task is None:
        served = served_operations(request.app.routes)
        task = asyncio.ensure_future(asyncio.to_thread(build_document, served))
        state.openapi_document = task
    try:
        # shielded: a client that goes away must not cancel the build others wait for
        return await asyncio.shield(task)
    except Exception:
        if getattr(state, "openapi_document", None) is task:
            state.openapi_document = None  # a failed build is tried again by the next request
        raise


async def openapi_document(request: Request) -> Response:
    base = str(request.url.replace(query="", fragment="")).removesuffix("/openapi.json")
    servers = orjson.dumps([{"url": base, "description": "This Crossroads server"}])
    body = await _document(request)
    return Response(b'{"servers":' + servers + b"," + body[1:], media_type=JSON.media_type)
