"""Provider adapters (pure translations per wire protocol) and the HTTP layer."""

from crossroads.providers.anthropic import AnthropicAdapter
from crossroads.providers.base import Adapter
from crossroads.providers.gemini import GeminiAdapter
from crossroads.providers.openai.adapter import OpenAIAdapter


def builtin_adapters() -> dict[str, Adapter]:
    """Adapters by wire protocol name, as `api:` in the catalog names them."""
    return {
        adapter.api: adapter for adapter in (OpenAIAdapter(), AnthropicAdapter(), GeminiAdapter())
    }


__all__ = ["Adapter", "builtin_adapters"]
