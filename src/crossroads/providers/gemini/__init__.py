"""The Google Gemini wire protocol (`api: gemini`): generateContent and streamGenerateContent."""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.base import Completion, UpstreamRequest
from crossroads.providers.gemini.request import to_gemini_body
from crossroads.providers.gemini.response import GeminiStreamDecoder, from_gemini_response
from crossroads.schema.catalog import Endpoint, Provider


class GeminiAdapter:
    api = "gemini"

    def build_chat_request(
        self, body: dict[str, Any], endpoint: Endpoint, provider: Provider, *, stream: bool
    ) -> UpstreamRequest:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url = f"{(provider.base_url or '').rstrip('/')}/models/{endpoint.upstream_model}:{method}"
        headers = {"Content-Type": "application/json", **provider.quirks.headers}
        if provider.api_key:
            headers["x-goog-api-key"] = provider.api_key
        return UpstreamRequest(
            url=url,
            headers=headers,
            body=orjson.dumps(to_gemini_body(body, endpoint)),
            stream=stream,
        )

    def parse_chat_response(self, payload: Any) -> Completion:
        return from_gemini_response(payload)

    def stream_decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder()

    def error_message(self, payload: Any) -> str:
        if isinstance(payload, list) and payload:
            payload = payload[0]
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            return str(
                payload["error"].get("message")
                or payload["error"].get("status")
                or "upstream error"
            )
        return "upstream error"
