"""Hypothesis strategies for test_fuzz.py: OpenRouter's chat request, and the requests of the
inbound dialects (Anthropic Messages, OpenAI Responses, legacy completions)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from fuzz_strategies import (
    COUNT,
    INDEX,
    INT,
    JSON,
    JSON_OBJECT,
    MODEL,
    NUMBER,
    TEXT,
    few,
    fields,
    shape,
)


def obj(required: dict[str, Any] | None = None, **optional: Any) -> st.SearchStrategy[Any]:
    """An object of the right shape, always (for requests that should validate)."""
    return st.fixed_dictionaries(required or {}, optional=optional)


IMAGE_URL = TEXT | st.just("data:image/png;base64,iVBORw0K")
PART = st.one_of(
    obj({"type": st.just("text"), "text": TEXT}),
    obj({"type": st.just("image_url"), "image_url": obj({"url": IMAGE_URL})}),
    obj({"type": st.just("input_audio"), "input_audio": obj({"data": TEXT, "format": TEXT})}),
    obj({"type": st.just("file"), "file": obj(filename=TEXT, file_data=TEXT, file_id=TEXT)}),
)
CONTENT = TEXT | few(PART)
ARGUMENTS = TEXT | st.just('{"a": 1}')
CALL = obj(
    {
        "id": TEXT,
        "type": st.just("function"),
        "function": obj({"name": TEXT, "arguments": ARGUMENTS}),
    }
)
CHAT_MESSAGE = st.one_of(
    obj({"role": st.sampled_from(["system", "developer", "user"]), "content": CONTENT}, name=TEXT),
    obj(
        {"role": st.just("assistant")},
        content=CONTENT | st.none(),
        tool_calls=few(CALL),
        reasoning=TEXT,
        reasoning_details=few(JSON_OBJECT),
        refusal=TEXT,
    ),
    obj({"role": st.just("tool"), "content": CONTENT, "tool_call_id": TEXT}),
)
SCHEMA = st.just({"type": "object", "properties": {"a": {"type": "string"}}}) | JSON_OBJECT
FUNCTION = obj(
    {"name": st.text(min_size=1, max_size=64)},
    description=TEXT,
    parameters=SCHEMA,
    strict=st.booleans(),
)
TOOL = obj({"type": st.just("function"), "function": FUNCTION}) | obj({"type": TEXT})
CHAT = obj(
    {"messages": few(CHAT_MESSAGE, min_size=1, max_size=4)},
    model=TEXT,
    stream=st.booleans(),
    max_tokens=INT,
    max_completion_tokens=INT,
    temperature=st.floats(0, 2),
    top_p=st.floats(0, 1),
    top_k=INT,
    frequency_penalty=st.floats(-2, 2),
    seed=INT,
    stop=TEXT | few(TEXT, max_size=4),
    tools=few(TOOL),
    tool_choice=st.sampled_from(["auto", "none", "required"])
    | obj({"type": st.just("function"), "function": obj({"name": TEXT})}),
    parallel_tool_calls=st.booleans(),
    response_format=obj(
        {"type": st.sampled_from(["text", "json_object", "json_schema"])},
        json_schema=obj({"name": st.just("answer")}, schema=SCHEMA, strict=st.booleans()),
    ),
    reasoning=obj(
        effort=st.sampled_from(["high", "low", "none", "minimal"]),
        max_tokens=INT,
        exclude=st.booleans(),
        enabled=st.booleans(),
    ),
    reasoning_effort=st.sampled_from(["high", "medium", "low"]),
    user=TEXT,
    cache_control=st.just({"type": "ephemeral"}),
    logit_bias=st.dictionaries(TEXT, st.floats(-100, 100), max_size=2),
    unknown_field=JSON,
)


SOURCE = shape(
    {"type": st.sampled_from(["base64", "url", "text"])},
    media_type=st.sampled_from(["image/png", "application/pdf", "text/plain"]) | TEXT,
    data=TEXT,
    url=TEXT,
)
BLOCK_TYPES = [
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
]
BLOCK = st.deferred(
    lambda: shape(
        {"type": st.sampled_from(BLOCK_TYPES) | TEXT},
        text=TEXT,
        source=SOURCE,
        id=TEXT,
        name=TEXT,
        input=JSON_OBJECT,
        tool_use_id=TEXT,
        content=TEXT | few(BLOCK),
        is_error=st.booleans(),
        thinking=TEXT,
        signature=TEXT,
        data=TEXT,
        cache_control=st.just({"type": "ephemeral"}),
    )
)
MESSAGES = fields(
    {
        "model": MODEL,
        "max_tokens": COUNT,
        "messages": few(
            shape({"role": st.sampled_from(["user", "assistant"]), "content": TEXT | few(BLOCK)}),
            min_size=1,
        ),
    },
    system=TEXT | few(shape({"type": st.just("text"), "text": TEXT})),
    tools=few(shape({"name": TEXT}, input_schema=SCHEMA, description=TEXT, type=TEXT)),
    tool_choice=shape(
        {"type": st.sampled_from(["auto", "any", "tool", "none"])},
        name=TEXT,
        disable_parallel_tool_use=st.booleans(),
    ),
    thinking=shape(
        {"type": st.sampled_from(["enabled", "disabled", "adaptive"])}, budget_tokens=COUNT
    ),
    stop_sequences=few(TEXT),
    temperature=st.floats(0, 1) | NUMBER,
    top_p=st.floats(0, 1) | NUMBER,
    top_k=INT,
    stream=st.booleans(),
    metadata=shape(user_id=TEXT),
    output_format=shape({"type": st.just("json_schema")}, schema=SCHEMA),
)
RESPONSE_PART = shape(
    {"type": st.sampled_from(["input_text", "output_text", "input_image", "input_file"]) | TEXT},
    text=TEXT,
    image_url=TEXT,
    detail=TEXT,
    file_data=TEXT,
    filename=TEXT,
    file_id=TEXT,
)
RESPONSE_ITEM = shape(
    {
        "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"])
        | TEXT
    },
    role=st.sampled_from(["user", "assistant", "system", "developer"]),
    content=TEXT | few(RESPONSE_PART),
    call_id=TEXT,
    name=TEXT,
    arguments=TEXT,
    output=TEXT | few(RESPONSE_PART),
    summary=few(shape({"type": st.just("summary_text"), "text": TEXT})),
    encrypted_content=TEXT,
    id=TEXT,
    status=TEXT,
)
RESPONSES = fields(
    {"model": MODEL, "input": TEXT | few(RESPONSE_ITEM, min_size=1)},
    instructions=TEXT,
    tools=few(
        shape(
            {"type": st.sampled_from(["function", "web_search"]) | TEXT},
            name=TEXT,
            parameters=SCHEMA,
            strict=st.booleans(),
            description=TEXT,
        )
    ),
    tool_choice=st.sampled_from(["auto", "none", "required"])
    | shape({"type": st.just("function")}, name=TEXT),
    text=shape(
        format=shape(
            {"type": st.sampled_from(["text", "json_schema", "json_object"])},
            name=TEXT,
            schema=SCHEMA,
            strict=st.booleans(),
        )
    ),
    reasoning=shape(effort=st.sampled_from(["low", "high", "none"]), summary=TEXT),
    max_output_tokens=COUNT,
    temperature=st.floats(0, 1) | NUMBER,
    top_p=st.floats(0, 1) | NUMBER,
    stream=st.booleans(),
    store=st.booleans(),
    previous_response_id=TEXT,
    parallel_tool_calls=st.booleans(),
    user=TEXT,
    metadata=JSON_OBJECT,
)
COMPLETIONS = fields(
    {"model": MODEL, "prompt": TEXT | few(TEXT) | few(INT)},
    suffix=TEXT | st.none(),
    echo=st.booleans(),
    best_of=INDEX,
    n=INDEX,
    max_tokens=COUNT,
    stream=st.booleans(),
    temperature=st.floats(0, 1) | NUMBER,
)
