"""Anthropic's Messages request (with OpenRouter's extensions), as msgspec types.

`POST /messages` checks a body against `MessagesRequest` before translating it, so a wrong
type is a 400 naming the client's own field (`$.tools[0].name`), never a crash deeper in.
Shapes follow OpenRouter's `MessagesRequest` schema; unknown extra fields stay allowed.
Numeric ranges mirror the chat request's, so the translated request cannot fail on them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from crossroads.schema.chat import PositiveInt, Unit

ToolName = Annotated[str, Meta(min_length=1, max_length=64)]
Bounded = Annotated[str, Meta(max_length=256)]


class CacheControl(Struct):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(Struct, tag="text", tag_field="type"):
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class UrlSource(Struct, tag="url", tag_field="type"):
    url: str


class PlainTextSource(Struct, tag="text", tag_field="type"):
    data: str
    media_type: str | None = None


class ImageBlock(Struct, tag="image", tag_field="type"):
    source: Base64Source | UrlSource
    cache_control: CacheControl | None = None


class ContentSource(Struct, tag="content", tag_field="type"):
    content: str | list[TextBlock | ImageBlock]


class DocumentBlock(Struct, tag="document", tag_field="type"):
    source: Base64Source | UrlSource | PlainTextSource | ContentSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ToolResultBlock(Struct, tag="tool_result", tag_field="type"):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock | DocumentBlock] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type"):
    id: str
    name: str
    input: dict[str, Any] | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(Struct, tag="thinking", tag_field="type"):
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str


UserBlock = TextBlock | ImageBlock | DocumentBlock | ToolResultBlock
AssistantBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock


class UserMessage(Struct, tag="user", tag_field="role"):
    content: str | list[UserBlock]


class AssistantMessage(Struct, tag="assistant", tag_field="role"):
    content: str | list[AssistantBlock]


class SystemMessage(Struct, tag="system", tag_field="role"):
    """OpenRouter's extension: a system turn among the messages."""

    content: str | list[TextBlock]


Message = UserMessage | AssistantMessage | SystemMessage


class Tool(Struct):
    """A client tool (`type` absent or `custom`); Anthropic's server tools have other types."""

    name: ToolName
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    cache_control: CacheControl | None = None


class ChoiceAuto(Struct, tag="auto", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class ChoiceAny(Struct, tag="any", tag_field="type"):
    disable_parallel_tool_use: bool | None = None


class ChoiceNone(Struct, tag="none", tag_field="type"):
    pass


class ChoiceTool(Struct, tag="tool", tag_field="type"):
    name: ToolName
    disable_parallel_tool_use: bool | None = None


ToolChoice = ChoiceAuto | ChoiceAny | ChoiceNone | ChoiceTool


class ThinkingEnabled(Struct, tag="enabled", tag_field="type"):
    budget_tokens: PositiveInt
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(Struct, tag="disabled", tag_field="type"):
    pass


class ThinkingAdaptive(Struct, tag="adaptive", tag_field="type"):
    display: Literal["summarized", "omitted"] | None = None


Thinking = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive


class Metadata(Struct):
    user_id: Bounded | None = None


class OutputFormat(Struct):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(Struct):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class Fallback(Struct, forbid_unknown_fields=True):
    model: str


class MessagesRequest(Struct):
    model: str
    messages: Annotated[list[Message], Meta(min_length=1)]
    max_tokens: PositiveInt | None = None
    system: str | list[TextBlock] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    stop_sequences: Annotated[list[str], Meta(max_length=4)] | None = None
    stream: bool = False
    metadata: Metadata | None = None
    thinking: Thinking | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    output_config: OutputConfig | None = None
    output_format: OutputFormat | None = None  # the beta's name for output_config.format
    fallbacks: Annotated[list[Fallback], Meta(max_length=3)] | None = None
    models: list[str] | None = None
    user: Bounded | None = None
    session_id: Bounded | None = None
    service_tier: str | None = None
    speed: Literal["fast", "standard"] | None = None
    cache_control: CacheControl | None = None
