"""OpenAI Responses request (stateless) -> OpenRouter chat request (the internal model).

The body is validated first against `schema.responses.ResponsesRequest` (a 400 names the
client's field), then translated from the typed values, so no wrong type reaches the code.
What cannot be served statelessly (stored responses, prompts, file ids, background runs)
is a 400, never silently dropped.
"""

from __future__ import annotations

from typing import Any

from crossroads.errors import GatewayError
from crossroads.schema.chat import validated
from crossroads.schema.responses import (
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputAudio,
    InputFile,
    InputImage,
    InputText,
    InputVideo,
    MessageItem,
    OutputText,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
    with_item_types,
)

# OpenRouter's extras, passed through untouched (the chat schema checks them, same names)
_EXTRAS = ("provider", "plugins", "route", "trace")
_SAME = (
    "provider plugins route trace model models session_id temperature top_p top_k "
    "top_logprobs presence_penalty frequency_penalty parallel_tool_calls reasoning tool_choice"
)
# chat-request paths that name the same field of the client's body, or the field it came from
CLIENT_PATHS = (
    (r"^\$\.tools\[(\d+)\]\.function\.", r"$.tools[\1]."),
    (r"^\$\.max_tokens\b", "$.max_output_tokens"),
    (r"^\$\.messages$", "$.input"),  # e.g. no message left: only reasoning items
    (r"^\$\.response_format\.json_schema\b", "$.text.format"),
    (rf"^\$\.({'|'.join(_SAME.split())})\b", r"$.\1"),
)


def _unsupported(what: str, path: str) -> GatewayError:
    return GatewayError(400, f"Invalid request: {what} - at `{path}`")


def _part(part: Any, path: str) -> dict[str, Any]:
    if isinstance(part, (InputText, OutputText)):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "text", "text": part.refusal}
    if isinstance(part, InputImage):
        if not part.image_url:
            raise _unsupported("an input_image needs `image_url` (file ids are not stored)", path)
        image: dict[str, Any] = {"url": part.image_url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, InputFile):
        data = part.file_data or part.file_url
        if not data:
            raise _unsupported(
                "an input_file needs `file_data` or `file_url` (file ids are not stored)", path
            )
        return {"type": "file", "file": {"filename": part.filename, "file_data": data}}
    if isinstance(part, InputAudio):
        audio = part.input_audio
        return {"type": "input_audio", "input_audio": {"data": audio.data, "format": audio.format}}
    assert isinstance(part, InputVideo)
    return {"type": "video_url", "video_url": {"url": part.video_url}}


def _content(content: str | list[Any] | None, path: str) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return [_part(p, f"{path}[{j}]") for j, p in enumerate(content)]


def _assistant(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message to extend: the last one, unless a newer turn came after it."""
    if messages and messages[-1]["role"] == "assistant":
        return messages[-1]
    messages.append({"role": "assistant", "content": None})
    return messages[-1]


def _assistant_text(item: MessageItem, path: str, target: dict[str, Any]) -> None:
    if isinstance(item.content, str) or item.content is None:
        text = item.content or ""
    else:
        pieces = []
        for j, part in enumerate(item.content):
            if isinstance(part, Refusal):
                target["refusal"] = (target.get("refusal") or "") + part.refusal
            elif isinstance(part, (OutputText, InputText)):
                pieces.append(part.text)
            else:
                raise _unsupported(
                    "assistant messages carry output_text or refusal parts",
                    f"{path}.content[{j}].type",
                )
        text = "".join(pieces)
    if text:
        target["content"] = (target.get("content") or "") + text


def _reasoning(item: ReasoningItem) -> list[dict[str, Any]]:
    fmt = item.format or "openai-responses-v1"
    details: list[dict[str, Any]] = [
        {"type": "reasoning.summary", "summary": s.text, "format": fmt}
        for s in item.summary or []
        if s.text
    ]
    for c in item.content or []:
        detail = {"type": "reasoning.text", "text": c.text, "format": fmt}
        if item.signature:
            detail["signature"] = item.signature
        details.append(detail)
    if item.encrypted_content:
        details.append(
            {"type": "reasoning.encrypted", "data": item.encrypted_content, "format": fmt}
        )
    return details


def _items(items: list[Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        path = f"$.input[{i}]"
        if isinstance(item, MessageItem):
            if item.role == "assistant":
                _assistant_text(item, path, _assistant(messages))
            else:
                content = _content(item.content, f"{path}.content")
                messages.append({"role": item.role, "content": content})
        elif isinstance(item, FunctionCallItem):
            _assistant(messages).setdefault("tool_calls", []).append(
                {
                    "id": item.call_id,
                    "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments or "{}"},
                }
            )
        elif isinstance(item, FunctionCallOutputItem):
            output = _content(item.output, f"{path}.output")
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
        else:
            details = _reasoning(item)
            if details:
                _assistant(messages).setdefault("reasoning_details", []).extend(details)
    return messages


def _stateless(request: ResponsesRequest) -> None:
    if request.store:
        raise GatewayError(400, "'store' must be false: this Responses API is stateless")
    if request.previous_response_id:
        raise GatewayError(
            400, "'previous_response_id' is not supported: send the whole conversation in 'input'"
        )
    if request.background:
        raise GatewayError(400, "'background' is not supported: this Responses API is stateless")
    if request.prompt is not None:
        raise GatewayError(400, "'prompt' (stored prompt templates) is not supported")


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    fmt = request.text.format if request.text else None
    if isinstance(fmt, FormatJsonSchema):
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
        for key, value in (("strict", fmt.strict), ("description", fmt.description)):
            if value is not None:
                schema[key] = value
        return {"type": "json_schema", "json_schema": schema}
    if isinstance(fmt, FormatJsonObject):
        return {"type": "json_object"}
    return None


def _reasoning_config(request: ResponsesRequest) -> dict[str, Any] | None:
    config = request.reasoning
    if config is None:
        return None
    keys = ("effort", "max_tokens", "exclude", "enabled", "summary")
    return {k: getattr(config, k) for k in keys if getattr(config, k) is not None} or None


def _translate(request: ResponsesRequest, raw: dict[str, Any]) -> dict[str, Any]:
    source = request.input
    messages = [{"role": "user", "content": source}] if isinstance(source, str) else _items(source)
    if request.instructions:
        messages.insert(0, {"role": "system", "content": request.instructions})
    chat: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    chat.update({k: raw[k] for k in _EXTRAS if raw.get(k) is not None})
    optional = {
        "models": request.models,
        "session_id": request.session_id,
        "prompt_cache_key": request.prompt_cache_key,
        "service_tier": request.service_tier,
        "parallel_tool_calls": request.parallel_tool_calls,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "top_logprobs": request.top_logprobs,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "max_tokens": request.max_output_tokens,
        "user": request.safety_identifier or request.user,
        "reasoning": _reasoning_config(request),
        "response_format": _response_format(request),
        "verbosity": request.text.verbosity if request.text else None,
    }
    chat.update({k: v for k, v in optional.items() if v is not None})
    if request.tools:
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    k: v
                    for k, v in (
                        ("name", t.name),
                        ("description", t.description),
                        ("parameters", t.parameters),
                        ("strict", t.strict),
                    )
                    if v is not None
                },
            }
            for t in request.tools
        ]
    choice = request.tool_choice
    if isinstance(choice, FunctionChoice):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        chat["tool_choice"] = choice
    return chat


def responses_to_chat(raw: Any) -> dict[str, Any]:
    request = validated(with_item_types(raw), ResponsesRequest)
    _stateless(request)
    return _translate(request, raw)
