"""Anthropic Messages request -> OpenRouter chat request (the internal model).

The body is validated first against `schema.messages.MessagesRequest` (a 400 names the
client's field), then translated from the typed values, so no wrong type reaches the code.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.errors import GatewayError
from crossroads.schema.chat import validated
from crossroads.schema.messages import (
    AssistantMessage,
    Base64Source,
    CacheControl,
    ChoiceAny,
    ChoiceNone,
    ChoiceTool,
    ContentSource,
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    PlainTextSource,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ThinkingDisabled,
    ThinkingEnabled,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
    UserMessage,
)

# OpenRouter's extras on /messages, passed through untouched (the chat schema checks them,
# under the same names)
_EXTRAS = ("provider", "plugins", "route", "trace")
# chat-request paths that name the same field of the client's body, or the field it came from
CLIENT_PATHS = (
    (r"^\$\.tools\[(\d+)\]\.function\.", r"$.tools[\1]."),
    (r"^\$\.stop\b", "$.stop_sequences"),
    (r"^\$\.messages$", "$.messages"),  # e.g. no message left: only empty turns
    (r"^\$\.(provider|plugins|route|trace|model|models|session_id)\b", r"$.\1"),
)


def _cache(cache_control: CacheControl | None) -> dict[str, Any] | None:
    if cache_control is None:
        return None
    out: dict[str, Any] = {"type": cache_control.type}
    if cache_control.ttl:
        out["ttl"] = cache_control.ttl
    return out


def _url(source: Base64Source | UrlSource) -> str:
    if isinstance(source, Base64Source):
        return f"data:{source.media_type};base64,{source.data}"
    return source.url


def _parts(block: TextBlock | ImageBlock | DocumentBlock) -> list[dict[str, Any]]:
    """One content block as chat content parts (a document's `content` source gives several)."""
    parts: list[dict[str, Any]]
    if isinstance(block, TextBlock):
        parts = [{"type": "text", "text": block.text}]
    elif isinstance(block, ImageBlock):
        parts = [{"type": "image_url", "image_url": {"url": _url(block.source)}}]
    elif isinstance(block.source, PlainTextSource):
        parts = [{"type": "text", "text": block.source.data}]
    elif isinstance(block.source, ContentSource):
        inner = block.source.content
        parts = (
            [{"type": "text", "text": inner}]
            if isinstance(inner, str)
            else [p for b in inner for p in _parts(b)]
        )
    else:
        parts = [
            {
                "type": "file",
                "file": {
                    "filename": block.title or "document.pdf",
                    "file_data": _url(block.source),
                },
            }
        ]
    cache = _cache(block.cache_control)
    if cache and parts:
        parts[-1]["cache_control"] = cache
    return parts


def _content(content: str | list[Any]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    return [p for block in content for p in _parts(block)]


def _tool_result(block: ToolResultBlock) -> dict[str, Any]:
    content: str | list[dict[str, Any]] = _content(block.content or "")
    if block.is_error:
        content = (
            f"Error: {content}"
            if isinstance(content, str)
            else [{"type": "text", "text": "Error:"}, *content]
        )
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": content}


def _user_turn(message: UserMessage) -> list[dict[str, Any]]:
    """A user turn: its tool results become tool messages, the rest one user message."""
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    out = [_tool_result(b) for b in message.content if isinstance(b, ToolResultBlock)]
    rest = [b for b in message.content if not isinstance(b, ToolResultBlock)]
    if rest:
        out.append({"role": "user", "content": _content(rest)})
    return out


def _assistant_turn(message: AssistantMessage) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = orjson.dumps(block.input or {}).decode()
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        elif isinstance(block, ThinkingBlock):
            details.append(
                {
                    "type": "reasoning.text",
                    "text": block.thinking,
                    "signature": block.signature,
                    "format": "anthropic-claude-v1",
                }
            )
        elif isinstance(block, RedactedThinkingBlock):
            details.append(
                {"type": "reasoning.encrypted", "data": block.data, "format": "anthropic-claude-v1"}
            )
    message_out: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message_out["tool_calls"] = calls
    if details:
        message_out["reasoning_details"] = details
    return message_out


def _tool_choice(choice: ToolChoice) -> tuple[Any, bool | None]:
    parallel = False if getattr(choice, "disable_parallel_tool_use", None) else None
    if isinstance(choice, ChoiceTool):
        return {"type": "function", "function": {"name": choice.name}}, parallel
    if isinstance(choice, ChoiceAny):
        return "required", parallel
    if isinstance(choice, ChoiceNone):
        return "none", parallel
    return "auto", parallel


def _tools(request: MessagesRequest) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(request.tools or []):
        if tool.type not in (None, "custom"):
            raise GatewayError(
                400,
                f"Invalid request: tools of type {tool.type!r} (server tools) are not "
                f"supported - at `$.tools[{i}].type`",
            )
        if tool.input_schema is None:
            raise GatewayError(
                400,
                f"Invalid request: Object missing required field `input_schema` - at "
                f"`$.tools[{i}]`",
            )
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description is not None:
            function["description"] = tool.description
        tools.append({"type": "function", "function": function})
    return tools


def _messages(request: MessagesRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": _content(request.system)})
    for m in request.messages:
        if isinstance(m, UserMessage):
            messages += _user_turn(m)
        elif isinstance(m, AssistantMessage):
            messages.append(_assistant_turn(m))
        else:
            messages.append({"role": "system", "content": _content(m.content)})
    return messages


def _translate(request: MessagesRequest, raw: dict[str, Any]) -> dict[str, Any]:
    chat: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request),
        "stream": request.stream,
    }
    chat.update({k: raw[k] for k in _EXTRAS if raw.get(k) is not None})
    optional = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": request.top_k,
        "stop": request.stop_sequences or None,
        "models": [f.model for f in request.fallbacks or []] or request.models,
        "session_id": request.session_id,
        "user": request.user or (request.metadata.user_id if request.metadata else None),
        "cache_control": _cache(request.cache_control),
    }
    chat.update({k: v for k, v in optional.items() if v is not None})
    if isinstance(request.thinking, ThinkingEnabled):
        chat["reasoning"] = {"max_tokens": request.thinking.budget_tokens}
    elif isinstance(request.thinking, ThinkingDisabled):
        chat["reasoning"] = {"enabled": False}
    elif request.thinking is not None:  # adaptive: the model decides how much to think
        chat["reasoning"] = {"enabled": True}
    config = request.output_config
    output_format = (config.format if config else None) or request.output_format
    if output_format is not None:
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output_format.schema},
        }
    if config is not None and config.effort is not None:
        chat["verbosity"] = config.effort  # OpenRouter's chat name for Anthropic's effort
    if request.tools:
        chat["tools"] = _tools(request)
    if request.tool_choice is not None:
        chat["tool_choice"], parallel = _tool_choice(request.tool_choice)
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    return chat


def messages_to_chat(raw: Any) -> dict[str, Any]:
    request = validated(raw, MessagesRequest)
    if request.fallbacks and request.models:
        raise GatewayError(400, "Use either 'fallbacks' or 'models', not both")
    return _translate(request, raw)
