"""The OpenAI-compatible wire protocol: pure translations, per-provider quirks as data.

One adapter serves every `api: openai` provider (vLLM, llama.cpp, Ollama, SGLang, Groq,
Together, DeepInfra, ...). Where a provider differs, its `Quirks` row says how.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.providers.base import (
    Completion,
    UpstreamError,
    UpstreamRequest,
    normalise_finish_reason,
)
from crossroads.providers.reasoning import resolve_reasoning
from crossroads.providers.untrusted import (
    count,
    error_text,
    items,
    obj,
    read_json,
    read_usage,
    text,
)
from crossroads.providers.wire import hash_user_id
from crossroads.schema.catalog import Endpoint, Provider
from crossroads.schema.chat import PARAMETERS, ROUTER_FIELDS

# When an endpoint takes only one spelling of the completion limit, the other is renamed.
_LIMIT_ALIASES = {"max_completion_tokens": "max_tokens", "max_tokens": "max_completion_tokens"}
_REASONING_FIELDS = ("reasoning", "reasoning_effort", "include_reasoning")


def _reasoning_fields(
    body: dict[str, Any], endpoint: Endpoint, provider: Provider
) -> dict[str, Any]:
    """OpenRouter's reasoning request in the provider's terms."""
    spec = resolve_reasoning(body)
    supported = endpoint.supported_parameters
    if spec is None or (supported is not None and not set(_REASONING_FIELDS) & set(supported)):
        return {}
    if provider.quirks.reasoning == "object":
        return {"reasoning": body.get("reasoning") or {"enabled": spec.enabled}}
    if not spec.enabled:
        return {"reasoning_effort": "none"} if body.get("reasoning_effort") == "none" else {}
    limit = (
        body.get("max_completion_tokens")
        or body.get("max_tokens")
        or endpoint.max_completion_tokens
    )
    return {"reasoning_effort": spec.effort_for(limit)}


def _response_format(value: Any, provider: Provider) -> Any:
    if (
        provider.quirks.json_schema == "json_object"
        and isinstance(value, dict)
        and value.get("type") == "json_schema"
    ):
        return {
            "type": "json_object",
            "schema": (value.get("json_schema") or {}).get("schema") or {},
        }
    return value


def _forwarded_key(key: str, supported: list[str] | None) -> str | None:
    """The name a request parameter travels under, or None when the endpoint lacks it."""
    if key not in PARAMETERS or supported is None or key in supported:
        return key
    alias = _LIMIT_ALIASES.get(key)
    return alias if alias in supported else None


def to_openai_body(
    body: dict[str, Any], endpoint: Endpoint, provider: Provider, *, stream: bool
) -> dict[str, Any]:
    """The upstream JSON body: router fields removed, unsupported parameters dropped."""
    quirks = provider.quirks
    out: dict[str, Any] = {"model": endpoint.upstream_model}
    for key, value in body.items():
        if (
            value is None
            or key in ROUTER_FIELDS
            or key in quirks.drop_params
            or key in ("model", "stream")
        ):
            continue
        if key in _REASONING_FIELDS:
            continue
        if key == "response_format":
            value = _response_format(value, provider)
        name = _forwarded_key(key, endpoint.supported_parameters)
        if name is None:
            continue
        if name == "user":  # end-user ids are never sent upstream raw
            value = hash_user_id(value)
        out[quirks.rename_params.get(name, name)] = value
    out.update(_reasoning_fields(body, endpoint, provider))
    out["stream"] = stream
    if stream and quirks.stream_usage:
        out["stream_options"] = {"include_usage": True}
    return out


def request_headers(provider: Provider) -> dict[str, str]:
    """The headers of a JSON request to an OpenAI-compatible provider, credentials included."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        **provider.quirks.headers,
    }
    if provider.api_key:
        scheme = provider.quirks.auth_scheme
        headers[provider.quirks.auth_header] = (
            f"{scheme} {provider.api_key}" if scheme else provider.api_key
        )
    return headers


def _tool_calls(value: Any, what: str) -> list[dict[str, Any]] | None:
    """Tool calls as the provider sent them, checked; object arguments become JSON text."""
    if value is None:
        return None
    calls = []
    for call in items(value, what):
        call = dict(call)
        text(call.get("id"), f"{what}.id")
        text(call.get("type"), f"{what}.type")
        if call.get("index") is not None and count(call["index"], f"{what}.index") is None:
            raise TypeError(f"{what}.index is not a number")
        if "function" in call:
            function = dict(obj(call["function"], f"{what}.function"))
            text(function.get("name"), f"{what}.function.name")
            arguments = function.get("arguments")
            if isinstance(arguments, dict):
                function["arguments"] = orjson.dumps(arguments).decode()
            else:
                text(arguments, f"{what}.function.arguments")
            call["function"] = function
        calls.append(call)
    return calls


def _checked(message: Any, what: str) -> dict[str, Any]:
    """A message or delta with the fields the router reads checked for their types."""
    out = dict(obj(message, what))
    for key in ("role", "refusal", "reasoning", "reasoning_content"):
        text(out.get(key), f"{what}.{key}")
    content = out.get("content")
    if isinstance(content, list):  # content parts (e.g. Mistral's): the text parts, as text
        parts = items(content, f"{what}.content")
        out["content"] = "".join(
            p["text"] for p in parts if p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    else:
        text(content, f"{what}.content")
    for detail in items(out.get("reasoning_details"), f"{what}.reasoning_details"):
        for key in ("type", "text", "summary", "signature", "data", "format", "id"):
            text(detail.get(key), f"{what}.reasoning_details.{key}")
        count(detail.get("index"), f"{what}.reasoning_details.index")
    if "tool_calls" in out:
        out["tool_calls"] = _tool_calls(out["tool_calls"], f"{what}.tool_calls")
    return out


def _message(message: Any) -> dict[str, Any]:
    out = _checked(message, "message")
    out["role"] = "assistant"
    out.setdefault("content", None)
    out.setdefault("refusal", None)
    reasoning = out.pop("reasoning_content", None)
    out["reasoning"] = out.get("reasoning") or reasoning
    if out["reasoning"] and not out.get("reasoning_details"):
        out["reasoning_details"] = [
            {"type": "reasoning.text", "text": out["reasoning"], "format": "unknown", "index": 0}
        ]
    return out


def _choice(choice: dict[str, Any], *, delta: bool) -> dict[str, Any]:
    out = dict(choice)
    native = text(choice.get("finish_reason"), "finish_reason")
    out["finish_reason"] = normalise_finish_reason(native)
    out["native_finish_reason"] = text(
        choice.get("native_finish_reason", native), "native_finish_reason"
    )
    out["index"] = count(choice.get("index"), "choice index") or 0
    if delta:
        d = _checked(choice.get("delta"), "delta")
        if "reasoning_content" in d:
            d["reasoning"] = d.pop("reasoning_content")
        if d.get("reasoning") and not d.get("reasoning_details"):
            d["reasoning_details"] = [
                {"type": "reasoning.text", "text": d["reasoning"], "format": "unknown", "index": 0}
            ]
        out["delta"] = d
    else:
        out["message"] = _message(choice.get("message"))
        out.setdefault("logprobs", None)
    return out


class OpenAIStreamDecoder:
    """Chunks of an OpenAI-compatible stream, with finish reasons normalised.

    The stream has ended once `[DONE]` or a finish reason arrived (some providers never
    send `[DONE]`)."""

    def __init__(self) -> None:
        self.ended = False

    def feed(self, data: str) -> list[dict[str, Any]]:
        if data.strip() == "[DONE]":
            self.ended = True
            return []
        chunk = read_json(data)
        if not isinstance(chunk, dict):
            raise ValueError("stream chunk is not a JSON object")
        if chunk.get("error"):
            raise ValueError(error_text(chunk["error"]))
        choices = [_choice(c, delta=True) for c in items(chunk.get("choices"), "choices")]
        out: dict[str, Any] = {
            "choices": choices,
            "upstream_id": text(chunk.get("id"), "id"),
        }
        usage = read_usage(chunk.get("usage"))
        if usage:
            out["usage"] = usage
        if any(c["finish_reason"] for c in choices):
            self.ended = True
        return [out]


class OpenAIAdapter:
    api = "openai"

    def build_chat_request(
        self, body: dict[str, Any], endpoint: Endpoint, provider: Provider, *, stream: bool
    ) -> UpstreamRequest:
        url = (provider.base_url or "").rstrip("/") + provider.quirks.chat_path
        payload = orjson.dumps(to_openai_body(body, endpoint, provider, stream=stream))
        return UpstreamRequest(
            url=url, headers=request_headers(provider), body=payload, stream=stream
        )

    def parse_chat_response(self, payload: Any) -> Completion:
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise ValueError("response has no 'choices' list")
        return Completion(
            upstream_id=text(payload.get("id"), "id"),
            choices=[_choice(c, delta=False) for c in items(payload["choices"], "choices")],
            usage=read_usage(payload.get("usage")),
            system_fingerprint=text(payload.get("system_fingerprint"), "system_fingerprint"),
            service_tier=text(payload.get("service_tier"), "service_tier"),
        )

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    def error_message(self, payload: Any) -> str:
        if isinstance(payload, dict):
            err = payload.get("error")
            if isinstance(err, dict) and err.get("message"):
                return str(err["message"])
            if isinstance(err, str):
                return err
            if payload.get("message"):
                return str(payload["message"])
        return "upstream error"


__all__ = ["OpenAIAdapter", "UpstreamError", "to_openai_body"]
