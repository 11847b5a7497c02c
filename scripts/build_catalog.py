#!/usr/bin/env python3
"""Build the bundled default catalog from the public snapshots in ../shared/catalog-data.

Usage: python scripts/build_catalog.py [SOURCE_DIR] [OUTPUT_FILE]

Only facts are kept: models with OpenRouter's Model fields, providers with their public
data policies, and each model's endpoints (price, limits, quantization, parameters).
The snapshot's latency and throughput figures are dropped on purpose: Crossroads shows
the figures it measures itself, never somebody else's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "catalog-data"
DEFAULT_OUTPUT = HERE.parent / "src" / "crossroads" / "catalog" / "data" / "catalog.json"

# OpenRouter provider slug -> models.dev provider id, for the providers' own model names
MODELS_DEV_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google-ai-studio": "google",
    "groq": "groq",
    "together": "togetherai",
    "deepinfra": "deepinfra",
    "fireworks": "fireworks-ai",
    "cerebras": "cerebras",
    "mistral": "mistral",
    "xai": "xai",
    "deepseek": "deepseek",
    "nebius": "nebius",
    "novita": "novita-ai",
}

ENDPOINT_FIELDS = (
    "context_length",
    "max_completion_tokens",
    "max_prompt_tokens",
    "quantization",
    "supported_parameters",
    "supports_implicit_caching",
)


def _wire_protocol(front: dict) -> str | None:
    """The wire protocol a provider speaks, from OpenRouter's adapter name."""
    adapter = front.get("adapterName") or ""
    if "Anthropic" in adapter:
        return "anthropic"
    if "Google" in adapter or "Vertex" in adapter or "Gemini" in adapter:
        return "gemini"
    if front.get("hasChatCompletions"):
        return "openai"
    return None


def _name_key(model_id: str) -> str:
    """A spelling-insensitive key: last path segment, lower case, dots as dashes, no variant."""
    return model_id.split(":")[0].rsplit("/", 1)[-1].lower().replace(".", "-")


def _native_names(src: Path) -> dict[str, dict[str, str]]:
    """Per OpenRouter provider slug: OpenRouter model id or name key -> the provider's model id."""
    dev = json.loads((src / "models-dev.json").read_text())
    out: dict[str, dict[str, str]] = {}
    for slug, dev_id in MODELS_DEV_PROVIDERS.items():
        names: dict[str, str] = {}
        for native_id, model in (dev.get(dev_id) or {}).get("models", {}).items():
            names.setdefault(_name_key(native_id), native_id)
            if model.get("base_model"):
                names[model["base_model"]] = native_id
        out[slug] = names
    return out


def _upstream_model(model_id: str, provider: str, native: dict[str, dict[str, str]]) -> str | None:
    names = native.get(provider) or {}
    return names.get(model_id.split(":")[0]) or names.get(_name_key(model_id))


def _providers(src: Path, used_slugs: set[str], names: dict[str, str]) -> list[dict]:
    current = {
        p["slug"]: p
        for p in json.loads((src / "openrouter-providers-2026-08-08.json").read_text())["data"]
    }
    older = {
        p["slug"]: p for p in json.loads((src / "openrouter-providers.json").read_text())["data"]
    }
    front = {
        p["slug"]: p
        for p in json.loads((src / "openrouter-frontend-providers-2026-08-08.json").read_text())
    }
    rows = []
    for slug in sorted(set(current) | used_slugs):
        base = current.get(slug) or older.get(slug) or {"slug": slug, "name": names.get(slug, slug)}
        f = front.get(slug, {})
        policy = f.get("dataPolicy")
        rows.append(
            {
                "slug": slug,
                "name": base.get("name") or names.get(slug, slug),
                "api": _wire_protocol(f) if f else None,
                "base_url": f.get("baseUrl")
                if str(f.get("baseUrl", "")).startswith("http")
                else None,
                "privacy_policy_url": base.get("privacy_policy_url"),
                "terms_of_service_url": base.get("terms_of_service_url"),
                "status_page_url": base.get("status_page_url"),
                "headquarters": base.get("headquarters"),
                "datacenters": base.get("datacenters"),
                "data_policy": (
                    {
                        "training": bool(policy.get("training")),
                        "retains_prompts": bool(policy.get("retainsPrompts")),
                    }
                    if policy
                    else None
                ),
            }
        )
    return rows


def _endpoint(raw: dict, model_id: str, native: dict[str, dict[str, str]]) -> dict:
    tag = raw["tag"]
    provider = tag.split("/")[0]
    pricing = {k: v for k, v in raw["pricing"].items() if k != "discount" or v}
    out = {
        "tag": tag,
        "provider": provider,
        "provider_name": raw["provider_name"],
        "pricing": pricing,
    }
    upstream = _upstream_model(model_id, provider, native)
    if upstream:
        out["upstream_model"] = upstream
    out.update({k: raw.get(k) for k in ENDPOINT_FIELDS})
    out["supports_implicit_caching"] = bool(out["supports_implicit_caching"])
    out["status"] = raw.get("status") or 0
    return out


def build(src: Path) -> dict:
    listed = {
        m["id"]: m for m in json.loads((src / "openrouter-models-all.json").read_text())["data"]
    }
    older = {
        m["id"]: m for m in json.loads((src / "openrouter-models-2026-05.json").read_text())["data"]
    }
    models, used_slugs, names = [], set(), {}
    native = _native_names(src)
    for path in sorted((src / "openrouter-endpoints").glob("*.json")):
        if path.name.startswith("_"):
            continue
        data = json.loads(path.read_text())["data"]
        model = dict(listed.get(data["id"]) or older.get(data["id"]) or {})
        if not model:  # a model only the endpoints file knows: take its own fields
            model = {k: data[k] for k in ("id", "name", "created", "description", "architecture")}
        model.pop("links", None)  # derived at run time from the id
        model["endpoints"] = [_endpoint(e, data["id"], native) for e in data["endpoints"]]
        for e in model["endpoints"]:
            used_slugs.add(e["provider"])
            names[e["provider"]] = e["provider_name"]
        models.append(model)
    return {
        "source": "OpenRouter public API snapshots (2026-05 and 2026-08), "
        "see ../shared/catalog-data/README.md",
        "providers": _providers(src, used_slugs, names),
        "models": models,
    }


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUTPUT
    catalog = build(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(catalog, separators=(",", ":"), sort_keys=True) + "\n")
    endpoints = [e for m in catalog["models"] for e in m["endpoints"]]
    named = sum(1 for e in endpoints if "upstream_model" in e)
    print(
        f"{out}: {len(catalog['models'])} models, {len(endpoints)} endpoints "
        f"({named} with the provider's own "
        f"model name), {len(catalog['providers'])} providers"
    )


if __name__ == "__main__":
    main()
