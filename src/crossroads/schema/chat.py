"""OpenRouter's chat-completions request, as msgspec types used for validation.

The request itself travels through the gateway as the JSON dict the client sent, so
that provider-specific fields pass through untouched; `parse_chat_request` checks it
against these types and returns the typed view the router reads.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from crossroads.errors import GatewayError

T = TypeVar("T")
Unit = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
PositiveInt = Annotated[int, Meta(ge=1)]
Effort = Literal["max", "xhigh", "high", "medium", "low", "minimal", "none"]

# OpenRouter's `Parameter` vocabulary: what endpoints declare in `supported_parameters`.
PARAMETERS = frozenset(
    "temperature top_p top_k min_p top_a frequency_penalty presence_penalty repetition_penalty "
    "max_tokens max_completion_tokens logit_bias logprobs top_logprobs prediction seed "
    "response_format structured_outputs stop tools tool_choice parallel_tool_calls "
    "include_reasoning reasoning reasoning_effort web_search_options verbosity".split()
)
# Fields only the router reads; never forwarded to a provider.
ROUTER_FIELDS = frozenset(
    "model models provider route transforms plugins usage stream_options session_id trace debug "
    "preset metadata cache_control prompt_cache_options".split()
)


class ImageUrl(Struct):
    url: str
    detail: str | None = None


class InputAudio(Struct):
    data: str
    format: str


class FileData(Struct):
    filename: str | None = None
    file_data: str | None = None
    file_id: str | None = None


class VideoUrl(Struct):
    url: str


class TextPart(Struct, tag="text", tag_field="type"):
    text: str


class ImagePart(Struct, tag="image_url", tag_field="type"):
    image_url: ImageUrl


class AudioPart(Struct, tag="input_audio", tag_field="type"):
    input_audio: InputAudio


class FilePart(Struct, tag="file", tag_field="type"):
    file: FileData


class VideoPart(Struct, tag="video_url", tag_field="type"):
    video_url: VideoUrl


ContentPart = TextPart | ImagePart | AudioPart | FilePart | VideoPart


class FunctionCall(Struct):
    name: str
    arguments: str


class ToolCall(Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class SystemMessage(Struct, tag="system", tag_field="role"):
    content: str | list[ContentPart]
    name: str | None = None


class DeveloperMessage(Struct, tag="developer", tag_field="role"):
    content: str | list[ContentPart]
    name: str | None = None


class UserMessage(Struct, tag="user", tag_field="role"):
    content: str | list[ContentPart]
    name: str | None = None


class AssistantMessage(Struct, tag="assistant", tag_field="role"):
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    refusal: str | None = None


class ToolMessage(Struct, tag="tool", tag_field="role"):
    content: str | list[ContentPart]
    tool_call_id: str


Message = SystemMessage | DeveloperMessage | UserMessage | AssistantMessage | ToolMessage


class FunctionDef(Struct):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct):
    type: str
    function: FunctionDef | None = None


class JsonSchemaConfig(Struct):
    name: Annotated[str, Meta(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema", "grammar", "python"]
    json_schema: JsonSchemaConfig | None = None
    grammar: str | None = None


MAX_TRACE_BYTES = 4096  # a request's `trace`, as JSON, kept on its record
MetadataKey = Annotated[str, Meta(min_length=1, max_length=64)]
MetadataValue = Annotated[str, Meta(max_length=512)]


class PdfOptions(Struct, kw_only=True):
    engine: str | None = None


class Plugin(Struct, kw_only=True):
    """One of OpenRouter's `plugins`, by `id` (the settings of those not implemented are
    not read)."""

    id: Annotated[str, Meta(min_length=1, max_length=64)]
    enabled: bool = True
    pdf: PdfOptions | None = None  # file-parser
    max_results: Annotated[int, Meta(ge=1, le=20)] | None = None  # web
    search_prompt: Annotated[str, Meta(max_length=4000)] | None = None  # web


class Percentiles(Struct):
    p50: float | None = None
    p75: float | None = None
    p90: float | None = None
    p99: float | None = None


class SortSpec(Struct):
    by: Literal["price", "throughput", "latency", "exacto"] | None = None
    partition: Literal["model", "none"] | None = None


class MaxPrice(Struct):
    prompt: float | str | None = None
    completion: float | str | None = None
    request: float | str | None = None
    image: float | str | None = None
    audio: float | str | None = None


class ProviderPreferences(Struct):
    order: list[str] | None = None
    allow_fallbacks: bool | None = None
    require_parameters: bool | None = None
    data_collection: Literal["allow", "deny"] | None = None
    zdr: bool | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    quantizations: list[str] | None = None
    sort: Literal["price", "throughput", "latency", "exacto"] | SortSpec | None = None
    preferred_min_throughput: float | Percentiles | None = None
    preferred_max_latency: float | Percentiles | None = None
    max_price: MaxPrice | None = None


class Reasoning(Struct):
    effort: Effort | None = None
    max_tokens: int | None = None
    exclude: bool | None = None
    enabled: bool | None = None
    summary: str | None = None


class ChatRequest(Struct):
    messages: Annotated[list[Message], Meta(min_length=1)]
    model: str | None = None
    models: list[str] | None = None
    route: Literal["fallback", "sort"] | None = None
    provider: ProviderPreferences | None = None
    stream: bool = False
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Unit | None = None
    top_a: Unit | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    repetition_penalty: Annotated[float, Meta(ge=0, le=2)] | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    reasoning_effort: Effort | None = None
    include_reasoning: bool | None = None
    user: Annotated[str, Meta(max_length=256)] | None = None
    session_id: Annotated[str, Meta(max_length=256)] | None = None
    plugins: Annotated[list[Plugin], Meta(max_length=16)] | None = None
    # stored on the generation record as sent (GET /generation shows them), never forwarded
    metadata: Annotated[dict[MetadataKey, MetadataValue], Meta(max_length=16)] | None = None
    trace: Annotated[dict[Annotated[str, Meta(max_length=64)], Any], Meta(max_length=32)] | None = (
        None
    )
    transforms: Annotated[list[str], Meta(max_length=8)] | None = None

    @property
    def completion_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def validated(body: Any, kind: type[T]) -> T:
    """A decoded JSON body checked against `kind`; a 400 `GatewayError` names the bad field."""
    if not isinstance(body, dict):
        raise GatewayError(400, "Request body must be a JSON object")
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as exc:
        raise GatewayError(400, f"Invalid request: {exc}") from None


def parse_chat_request(body: Any) -> ChatRequest:
    request = validated(body, ChatRequest)
    if request.reasoning_effort and request.reasoning and request.reasoning.effort:
        if request.reasoning_effort != request.reasoning.effort:
            raise GatewayError(400, "reasoning_effort and reasoning.effort disagree; set only one")
    return request


_LOCATION = re.compile(r" - at `(\$[^`]*)`$")


def parse_translated_request(
    chat: dict[str, Any], client_paths: Sequence[tuple[str, str]]
) -> ChatRequest:
    """`parse_chat_request` for a dialect's request translated into the chat request. A
    failure must not name an internal field: its location is rewritten by the first
    `(pattern, replacement)` of `client_paths` matching it (the client's own field), or left
    out. The dialect validates its body first, so this is a safety net."""
    try:
        return parse_chat_request(chat)
    except GatewayError as error:
        found = _LOCATION.search(error.message)
        if found is None:
            raise
        path, message = found.group(1), error.message[: found.start()]
        for pattern, replacement in client_paths:
            if re.match(pattern, path):
                message += f" - at `{re.sub(pattern, replacement, path, count=1)}`"
                break
        raise GatewayError(error.status, message, error_type=error.error_type) from None


def request_parameters(body: dict[str, Any]) -> set[str]:
    """The OpenRouter parameters a request actually sets (present and not null)."""
    return {k for k, v in body.items() if k in PARAMETERS and v is not None}
