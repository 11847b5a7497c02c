"""The `moderation` plugin: a request's input checked by a moderation service first.

The operator names the service in the config file, as one of its OpenAI-compatible
providers and a model:

    moderation:
      provider: guard          # a provider of the config (its base_url and credentials)
      model: omni-moderation-latest
      timeout_seconds: 10      # optional

A request with `plugins: [{id: "moderation"}]` has the text of its user messages sent to
`POST {base_url}/moderations` before it is planned. Input flagged there is refused with
OpenRouter's 403 (`metadata`: `reasons`, the categories flagged, `flagged_input`, the start
of the text, `provider_name`, `model_slug`) and goes to no model; how long the check took
is the generation's `moderation_latency`. When the check cannot be made (the service does
not answer, or answers something that is not a moderation result) the request is refused
with a 502: a request that asked to be moderated is never served unmoderated. Without a
`moderation` section the plugin is a 400.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crossroads.errors import ConfigError, GatewayError
from crossroads.providers.http import UpstreamClient
from crossroads.providers.openai.adapter import request_headers
from crossroads.schema.catalog import Provider

log = logging.getLogger("crossroads.plugins.moderation")
MAX_TEXTS = 32  # the latest user texts checked
MAX_TEXT_CHARS = 32_000  # of each
MAX_ANSWER_BYTES = 1 << 20
FLAGGED_INPUT_CHARS = 100


@dataclass(frozen=True, slots=True)
class ModerationConfig:
    provider: str
    model: str | None = None
    timeout: float = 10.0


def moderation_config(config: Mapping[str, Any]) -> ModerationConfig | None:
    """The config file's `moderation` section, checked (None without one)."""
    section = config.get("moderation")
    if section is None:
        return None
    if not isinstance(section, Mapping) or set(section) - {"provider", "model", "timeout_seconds"}:
        raise ConfigError("config: 'moderation' takes 'provider', 'model' and 'timeout_seconds'")
    provider, model = section.get("provider"), section.get("model")
    timeout = section.get("timeout_seconds", 10.0)
    if not isinstance(provider, str) or not provider:
        raise ConfigError("config: 'moderation.provider' must name a provider")
    if model is not None and not isinstance(model, str):
        raise ConfigError("config: 'moderation.model' must be text")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout:
        raise ConfigError("config: 'moderation.timeout_seconds' must be a positive number")
    return ModerationConfig(provider, model, float(timeout))


def user_texts(body: Mapping[str, Any]) -> list[str]:
    """The text of the request's user messages, the latest `MAX_TEXTS`, each bounded."""
    texts = []
    for message in body.get("messages") or ():
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content[:MAX_TEXT_CHARS])
            continue
        for part in content or ():
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text") or "")[:MAX_TEXT_CHARS])
    return [t for t in texts if t][-MAX_TEXTS:]


def flagged_categories(answer: object, count: int) -> list[list[str]]:
    """Per text, the categories flagged (empty: not flagged). A provider's answer is
    untrusted: anything but `{"results": [{"flagged": bool, "categories": {...}}, ...]}`
    with one result per text raises ValueError."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise ValueError("not one moderation result per input")
    found = []
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
            raise ValueError("a moderation result without 'flagged'")
        categories = result.get("categories") or {}
        if not isinstance(categories, dict):
            raise ValueError("moderation categories that are not an object")
        names = sorted(str(k)[:64] for k, v in categories.items() if v is True)[:20]
        found.append((names or ["flagged"]) if result["flagged"] else [])
    return found


class Moderator:
    """The configured moderation service, asked through the gateway's upstream client."""

    def __init__(self, client: UpstreamClient, provider: Provider, config: ModerationConfig):
        self.client, self.provider, self.config = client, provider, config
        self.url = f"{(provider.base_url or '').rstrip('/')}/moderations"

    async def check(self, texts: list[str]) -> float:
        """Milliseconds the check took; a 403 when any text is flagged, a 502 when the
        service could not say."""
        if not texts:
            return 0.0
        started = time.perf_counter()
        body: dict[str, Any] = {"input": texts}
        if self.config.model:
            body["model"] = self.config.model
        try:
            status, answer = await self.client.post_json(
                self.url,
                body,
                headers=request_headers(self.provider),
                timeout=self.config.timeout,
                limit=MAX_ANSWER_BYTES,
            )
            if status != 200:
                raise ValueError(f"status {status}")
            verdicts = flagged_categories(answer, len(texts))
        except (OSError, TimeoutError, ValueError) as error:
            log.warning("moderation check at %s failed: %s", self.provider.slug, error)
            raise GatewayError(
                502, f"The moderation check could not be made ({self.provider.name} failed)"
            ) from None
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        for text, reasons in zip(texts, verdicts, strict=True):
            if reasons:
                raise GatewayError(
                    403,
                    f"Your input was flagged by moderation for: {', '.join(reasons)}",
                    metadata={
                        "reasons": reasons,
                        "flagged_input": text[:FLAGGED_INPUT_CHARS],
                        "provider_name": self.provider.name,
                        "model_slug": self.config.model,
                    },
                )
        return elapsed
