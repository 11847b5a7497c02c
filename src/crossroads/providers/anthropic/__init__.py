"""The Anthropic Messages wire protocol (`api: anthropic`)."""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.anthropic.request import to_anthropic_body
from crossroads.providers.anthropic.response import AnthropicStreamDecoder, from_anthropic_response
from crossroads.providers.base import Completion, UpstreamRequest
from crossroads.schema.catalog import Endpoint, Provider

API_VERSION = "2023-06-01"


class AnthropicAdapter:
    api = "anthropic"

    def build_chat_request(
        self, body: dict[str, Any], endpoint: Endpoint, provider: Provider, *, stream: bool
    ) -> UpstreamRequest:
        payload, betas = to_anthropic_body(body, endpoint, stream=stream)
        headers = {
            "Content-Type": "application/json",
            "anthropic-version": API_VERSION,
            **provider.quirks.headers,
        }
        if provider.api_key:
            headers["x-api-key"] = provider.api_key
        if betas:
            headers["anthropic-beta"] = ",".join(betas)
        url = (provider.base_url or "").rstrip("/") + "/v1/messages"
        return UpstreamRequest(url=url, headers=headers, body=orjson.dumps(payload), stream=stream)

    def parse_chat_response(self, payload: Any) -> Completion:
        return from_anthropic_response(payload)

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def error_message(self, payload: Any) -> str:
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            return str(
                payload["error"].get("message") or payload["error"].get("type") or "upstream error"
            )
        return "upstream error"
