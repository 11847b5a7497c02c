"""OpenAI's Responses request (stateless, with OpenRouter's extensions), as msgspec types.

`POST /responses` checks a body against `ResponsesRequest` before translating it, so a wrong
type is a 400 naming the client's own field (`$.input[2].content[0].text`). Shapes follow
OpenRouter's `ResponsesRequest` schema; unknown extra fields stay allowed. Numeric ranges
mirror the chat request's, so the translated request cannot fail on them. Input items
are told apart by `type`; an item without one is a message (see `with_item_types`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from crossroads.schema.chat import Effort, Penalty, PositiveInt, Unit

Bounded = Annotated[str, Meta(max_length=256)]
SchemaName = Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class InputText(Struct, tag="input_text", tag_field="type"):
    text: str


class OutputText(Struct, tag="output_text", tag_field="type"):
    text: str
    annotations: list[dict[str, Any]] | None = None


class Refusal(Struct, tag="refusal", tag_field="type"):
    refusal: str


class InputImage(Struct, tag="input_image", tag_field="type"):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "high", "low", "original"] | None = None


class InputFile(Struct, tag="input_file", tag_field="type"):
    file_data: str | None = None
    file_url: str | None = None
    file_id: str | None = None
    filename: str | None = None


class AudioData(Struct):
    data: str
    format: str


class InputAudio(Struct, tag="input_audio", tag_field="type"):
    input_audio: AudioData


class InputVideo(Struct, tag="input_video", tag_field="type"):
    video_url: str


InputPart = InputText | InputImage | InputFile | InputAudio | InputVideo
MessagePart = InputPart | OutputText | Refusal


class MessageItem(Struct, tag="message", tag_field="type"):
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[MessagePart] | None = None
    id: str | None = None
    status: str | None = None


class FunctionCallItem(Struct, tag="function_call", tag_field="type"):
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(Struct, tag="function_call_output", tag_field="type"):
    call_id: str
    output: str | list[InputText | InputImage | InputFile]
    id: str | None = None
    status: str | None = None


class SummaryText(Struct, tag="summary_text", tag_field="type"):
    text: str


class ReasoningText(Struct, tag="reasoning_text", tag_field="type"):
    text: str


class ReasoningItem(Struct, tag="reasoning", tag_field="type"):
    id: str | None = None
    summary: list[SummaryText] | None = None
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    signature: str | None = None
    format: str | None = None
    status: str | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


class FunctionTool(Struct, tag="function", tag_field="type"):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    parameters: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class FunctionChoice(Struct, tag="function", tag_field="type"):
    name: str


ToolChoice = Literal["auto", "none", "required"] | FunctionChoice


class FormatText(Struct, tag="text", tag_field="type"):
    pass


class FormatJsonObject(Struct, tag="json_object", tag_field="type"):
    pass


class FormatJsonSchema(Struct, tag="json_schema", tag_field="type"):
    name: SchemaName
    schema: dict[str, Any]
    strict: bool | None = None
    description: str | None = None


class TextConfig(Struct):
    format: FormatText | FormatJsonObject | FormatJsonSchema | None = None
    verbosity: Literal["low", "medium", "high", "xhigh", "max"] | None = None


class ReasoningConfig(Struct):
    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    max_tokens: Annotated[int, Meta(ge=0)] | None = None
    enabled: bool | None = None
    exclude: bool | None = None
    context: Literal["auto", "all_turns", "current_turn"] | None = None
    mode: Literal["standard", "pro"] | None = None


class ResponsesRequest(Struct):
    input: str | list[InputItem]
    model: str | None = None
    models: list[str] | None = None
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Annotated[int, Meta(ge=0)] | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: dict[str, Annotated[str, Meta(max_length=512)]] | None = None
    stream: bool = False
    store: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    prompt: dict[str, Any] | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    safety_identifier: Bounded | None = None
    user: Bounded | None = None
    session_id: Bounded | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None


def with_item_types(body: Any) -> Any:
    """`body` with `type: "message"` on each input item without a `type` (OpenAI's easy
    input message), so that every item is told apart by `type`."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), list):
        return body
    items = [
        {**item, "type": "message"} if isinstance(item, dict) and "type" not in item else item
        for item in body["input"]
    ]
    return {**body, "input": items}
