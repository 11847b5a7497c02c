"""Build the in-memory catalog from the bundled data and an optional user YAML config.

A config file adds providers and models and overrides bundled ones field by field;
endpoints of a model are merged by tag. Decoding is strict: a typo in a config file
fails at start with the path of the bad field.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from crossroads.catalog.catalog import Catalog, Model
from crossroads.errors import ConfigError
from crossroads.schema.catalog import Endpoint, ModelSpec, Provider

# A marker field put on every bundled provider: it needs an API key (unless it is local).
# Providers a config file adds lack it and may run without a key.
_REQUIRES_KEY_FIELD = "requires_key"


def read_config(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping with 'providers' and 'models'")
    unknown = set(data) - {"providers", "models", "server", "credits", "moderation", "web_search"}
    if unknown:
        raise ConfigError(f"config {path}: unknown top-level keys {sorted(unknown)}")
    return data


def _bundled() -> dict[str, Any]:
    raw = resources.files("crossroads.catalog").joinpath("data/catalog.json").read_bytes()
    data: dict[str, Any] = msgspec.json.decode(raw)
    return data


def _presets() -> dict[str, Any]:
    text = resources.files("crossroads.catalog").joinpath("data/presets.yaml").read_text()
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _merge_by(
    key: str, base: Iterable[dict[str, Any]], overrides: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = {item[key]: dict(item) for item in base}
    for item in overrides:
        if not isinstance(item, dict) or key not in item:
            raise ConfigError(f"every entry needs '{key}': {item!r}")
        merged[item[key]] = {**merged.get(item[key], {}), **item}
    return merged


def _merge_models(
    base: list[dict[str, Any]], overrides: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    bundled = {m["id"]: m for m in base}
    merged = _merge_by("id", base, overrides)
    for item in overrides:
        old = bundled.get(item["id"])
        if old and "endpoints" in item:
            by_tag = {e["tag"]: e for e in old.get("endpoints", [])}
            for e in item["endpoints"]:
                tag = e.get("tag") or e.get("provider")
                by_tag[tag] = {**by_tag.get(tag, {}), **e}  # unset fields keep the bundled facts
            merged[item["id"]]["endpoints"] = list(by_tag.values())
    return merged


def _decode(kind: type, data: dict[str, Any], where: str) -> Any:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _aggregator_endpoint(spec: ModelSpec, aggregator: Provider) -> Endpoint:
    """An aggregator serves a model under the model's own id, at the model's list price."""
    top = spec.top_provider or {}
    return Endpoint(
        provider=aggregator.slug,
        upstream_model=spec.id,
        context_length=spec.context_length,
        max_completion_tokens=top.get("max_completion_tokens"),
        pricing={k: v for k, v in (spec.pricing or {}).items() if isinstance(v, (str, int, float))},
        supported_parameters=spec.supported_parameters,
    )


def _api_key(provider: Provider, env: Mapping[str, str]) -> str | None:
    """The provider's key: from the config, else from the variable `api_key_env` names."""
    if provider.api_key:
        return provider.api_key
    if provider.api_key_env:
        return env.get(provider.api_key_env) or None
    return None


def _config_problem(
    provider: Provider, adapters: Iterable[str], api_key: str | None, requires_key: bool
) -> str | None:
    """Why the provider cannot be used as configured (given its resolved key), or None."""
    if provider.api is None:
        return "no wire protocol is known for this provider; set 'api' in the config"
    if provider.api not in adapters:
        return f"the '{provider.api}' wire protocol is not supported yet"
    if not provider.base_url:
        return "no base_url; set one in the config"
    if api_key:
        return None
    if provider.api_key_env:
        return f"missing credentials: set {provider.api_key_env}"
    if requires_key:
        return "missing credentials: add api_key_env for this provider in the config"
    return None


def load_catalog(
    config: Mapping[str, Any],
    *,
    adapters: Iterable[str],
    env: Mapping[str, str] | None = None,
    created: int = 0,
) -> Catalog:
    """The catalog: bundled data overlaid with `config` (already read from YAML)."""
    env = os.environ if env is None else env
    adapters = set(adapters)
    bundled, presets = _bundled(), _presets()
    providers_raw = _merge_by(
        "slug",
        ({**p, _REQUIRES_KEY_FIELD: True} for p in bundled["providers"]),
        presets["providers"],
    )
    providers_raw = _merge_by("slug", providers_raw.values(), config.get("providers") or [])
    providers: dict[str, Provider] = {}
    for slug, raw in providers_raw.items():
        requires_key = bool(raw.pop(_REQUIRES_KEY_FIELD, False)) and not raw.get("local")
        raw.setdefault("name", slug)
        provider = _decode(Provider, raw, f"provider {slug}")
        api_key = _api_key(provider, env)
        provider.config_problem = _config_problem(provider, adapters, api_key, requires_key)
        if provider.config_problem is None:  # a key from the environment is used from now on
            provider.api_key = api_key
        providers[slug] = provider

    models_raw = _merge_models(bundled["models"], presets["models"])
    bundled_ids = {m["id"] for m in bundled["models"]}
    models: dict[str, Model] = {}
    for model_id, raw in _merge_models(
        list(models_raw.values()), config.get("models") or []
    ).items():
        spec = _decode(ModelSpec, raw, f"model {model_id}")
        for e in spec.endpoints:
            if e.provider not in providers:
                raise ConfigError(
                    f"model {model_id}: endpoint names unknown provider '{e.provider}'"
                )
        listed = model_id in bundled_ids  # an aggregator serves what OpenRouter's catalog lists
        for aggregator in providers.values():
            if (
                listed
                and aggregator.serves_catalog
                and aggregator.usable
                and not any(e.provider == aggregator.slug for e in spec.endpoints)
            ):
                spec.endpoints.append(_aggregator_endpoint(spec, aggregator))
        models[model_id] = Model.build(spec, providers, created=created)
    return Catalog(providers=providers, models=models)
