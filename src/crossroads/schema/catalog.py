"""Catalog types: providers, models and their endpoints (model x provider).

These are what the bundled catalog and a user's YAML config decode into; msgspec
checks field types, so a malformed config fails at start with the offending path.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from msgspec import Struct, field


def parse_price(value: Any) -> Decimal:
    """A catalog price (a decimal string, or a number from a config file) as a Decimal.

    Missing prices (None or "") are 0; `str()` first, so a float keeps its shortest repr
    (0.1 -> Decimal("0.1"), not its binary expansion). Malformed values raise
    `decimal.InvalidOperation`.
    """
    return Decimal(0) if value is None or value == "" else Decimal(str(value))


class DataPolicy(Struct, kw_only=True):
    training: bool = False
    retains_prompts: bool = False

    @property
    def zdr(self) -> bool:
        """Zero data retention: the provider neither keeps prompts nor trains on them."""
        return not self.training and not self.retains_prompts


class Quirks(Struct, kw_only=True, forbid_unknown_fields=True):
    """How one OpenAI-compatible provider differs from the reference API, as data."""

    chat_path: str = "/chat/completions"
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    headers: dict[str, str] = {}
    drop_params: list[str] = []
    rename_params: dict[str, str] = {}
    stream_usage: bool = True  # send stream_options.include_usage when streaming
    reasoning: str = (
        "effort"  # "effort": reasoning_effort; "object": OpenRouter's reasoning object as is
    )
    json_schema: str = (
        "native"  # "json_object": send json_schema as {"type": "json_object", "schema": ...}
    )


class Provider(Struct, kw_only=True, forbid_unknown_fields=True):
    slug: str
    name: str
    api: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: str | None = None  # only from the environment or a config file, never persisted
    timeout_seconds: float = 300.0
    connect_timeout_seconds: float = 10.0
    quirks: Quirks = field(default_factory=Quirks)
    data_policy: DataPolicy | None = None
    privacy_policy_url: str | None = None
    terms_of_service_url: str | None = None
    status_page_url: str | None = None
    headquarters: str | None = None
    datacenters: list[str] | None = None
    local: bool = False  # a server on this machine: probed at start and every 30 s
    serves_catalog: bool = (
        False  # an aggregator (OpenRouter): serves every catalog model under its own id
    )
    config_problem: str | None = None  # set by the catalog loader
    offline: str | None = None  # set by local discovery

    @property
    def unusable_reason(self) -> str | None:
        return self.config_problem or self.offline

    @property
    def usable(self) -> bool:
        return self.unusable_reason is None


class Endpoint(Struct, kw_only=True, forbid_unknown_fields=True):
    provider: str  # provider slug
    tag: str = ""  # "<provider>[/<variant>]"; defaults to the provider slug
    provider_name: str = ""
    upstream_model: str | None = None
    context_length: int | None = None
    max_completion_tokens: int | None = None
    max_prompt_tokens: int | None = None
    quantization: str | None = None
    pricing: dict[str, Any] = {}
    supported_parameters: list[str] | None = None  # None: the endpoint takes every parameter
    supports_implicit_caching: bool = False
    status: int = 0
    model_id: str = ""  # filled in by the catalog: the model this endpoint serves

    def price(self, key: str) -> Decimal:
        """The endpoint's price for `key` ("prompt", "completion", ...) in USD; 0 when unset."""
        return parse_price(self.pricing.get(key))

    def blended_price(self) -> Decimal:
        """Prompt plus completion price per token: what "cheapest" means when routing."""
        return self.price("prompt") + self.price("completion")

    @property
    def id(self) -> str:
        return f"{self.model_id}@{self.tag}"


class ModelSpec(Struct, kw_only=True):
    """A model as the bundled catalog or a config file describes it."""

    id: str
    name: str | None = None
    canonical_slug: str | None = None
    hugging_face_id: str | None = None
    created: int | None = None
    description: str | None = None
    context_length: int | None = None
    architecture: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    top_provider: dict[str, Any] | None = None
    per_request_limits: dict[str, Any] | None = None
    supported_parameters: list[str] | None = None
    default_parameters: dict[str, Any] | None = None
    supported_voices: list[str] | None = None
    knowledge_cutoff: str | None = None
    expiration_date: str | None = None
    reasoning: dict[str, Any] | None = None
    benchmarks: dict[str, Any] | None = None
    endpoints: list[Endpoint] = []
