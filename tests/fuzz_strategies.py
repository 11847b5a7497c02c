"""Hypothesis strategies for test_fuzz.py: JSON-ish values, and what providers send.

Values are shaped like each wire format (the fields it has, the vocabulary it uses), with
junk at every level (`maybe`: 1 in 16 values is any JSON instead), so that a translator's
checks past the first are reached as well as the first ones.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# --- JSON-ish values -------------------------------------------------------------------------

WORDS = (
    "assistant user system tool function text stop length null tool_use tool_calls "
    "end_turn max_tokens STOP MAX_TOKENS SAFETY auto message_start content_block_start "
    "content_block_delta message_delta error text_delta input_json_delta thinking_delta "
    "signature_delta thinking ping redacted_thinking message_stop content_block_stop"
).split() + ["", "[DONE]", "{}", "é", "\x00"]
INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson reads and writes
COUNT = st.integers(1, 5000)  # INT and everything else come in as junk (`maybe`)
INDEX = st.integers(0, 3)
NUMBER = INT | st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=12) | st.sampled_from(WORDS)
MODEL = st.sampled_from(["acme/open", "a/b:nitro", ""])
LEAF = st.none() | st.booleans() | NUMBER | TEXT
JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
JSON_OBJECT = st.dictionaries(TEXT, JSON, max_size=4)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly (15 in 16) the right kind of value, sometimes anything."""
    return st.integers(0, 15).flatmap(lambda roll: JSON if roll == 0 else strategy)


def fields(required: dict[str, Any] | None = None, **optional: Any) -> st.SearchStrategy[Any]:
    """An object with these fields (the optional ones present or not), each value sometimes
    anything."""
    values = {k: maybe(v) for k, v in (required or {}).items()}
    return st.fixed_dictionaries(values, optional={k: maybe(v) for k, v in optional.items()})


def shape(required: dict[str, Any] | None = None, **optional: Any) -> st.SearchStrategy[Any]:
    """`fields(...)`, or sometimes anything instead of the object."""
    return maybe(fields(required, **optional))


def few(strategy: st.SearchStrategy[Any], **kw: Any) -> st.SearchStrategy[list[Any]]:
    return st.lists(strategy, max_size=kw.pop("max_size", 3), **kw)


# --- what providers send ---------------------------------------------------------------------

FINISH = st.sampled_from(["stop", "length", "tool_calls", "content_filter", "error", "eos"]) | TEXT
OPENAI_USAGE = shape(
    prompt_tokens=COUNT,
    completion_tokens=COUNT,
    total_tokens=COUNT,
    cost=NUMBER,
    prompt_tokens_details=shape(cached_tokens=COUNT, cache_write_tokens=COUNT),
    completion_tokens_details=shape(reasoning_tokens=COUNT),
)
OPENAI_CALL = shape(
    index=INDEX,
    id=TEXT,
    type=st.just("function"),
    function=shape(name=TEXT, arguments=TEXT | JSON_OBJECT),
)
OPENAI_MESSAGE = shape(
    role=st.sampled_from(["assistant", "user", "tool"]),
    content=TEXT | st.none() | few(shape(type=st.just("text"), text=TEXT)),
    tool_calls=few(OPENAI_CALL),
    reasoning=TEXT,
    reasoning_content=TEXT,
    reasoning_details=few(shape(type=st.just("reasoning.text"), text=TEXT, signature=TEXT)),
    refusal=TEXT | st.none(),
)
OPENAI_CHOICE = shape(
    index=INDEX,
    message=OPENAI_MESSAGE,
    delta=OPENAI_MESSAGE,
    finish_reason=FINISH | st.none(),
    native_finish_reason=TEXT,
    logprobs=JSON,
)
OPENAI = shape(
    {"choices": few(OPENAI_CHOICE)},
    id=TEXT,
    object=TEXT,
    created=INT,
    model=TEXT,
    usage=OPENAI_USAGE | st.none(),
    system_fingerprint=TEXT | st.none(),
    service_tier=TEXT | st.none(),
    error=shape(message=TEXT, code=INT | TEXT),
)

ANTHROPIC_USAGE = shape(
    input_tokens=COUNT,
    output_tokens=COUNT,
    cache_read_input_tokens=COUNT | st.none(),
    cache_creation_input_tokens=COUNT | st.none(),
)
ANTHROPIC_BLOCK = shape(
    {"type": st.sampled_from(["text", "tool_use", "thinking", "redacted_thinking"]) | TEXT},
    text=TEXT,
    id=TEXT,
    name=TEXT,
    input=JSON_OBJECT,
    thinking=TEXT,
    signature=TEXT,
    data=TEXT,
)
ANTHROPIC_MESSAGE = shape(
    {"type": st.just("message"), "content": few(ANTHROPIC_BLOCK)},
    id=TEXT,
    role=st.just("assistant"),
    model=TEXT,
    stop_reason=FINISH | st.sampled_from(["end_turn", "tool_use", "max_tokens"]) | st.none(),
    stop_sequence=TEXT | st.none(),
    usage=ANTHROPIC_USAGE,
)
ANTHROPIC_DELTA = shape(
    type=st.sampled_from(["text_delta", "input_json_delta", "thinking_delta", "signature_delta"])
    | TEXT,
    text=TEXT,
    partial_json=TEXT | st.just('{"a": '),
    thinking=TEXT,
    signature=TEXT,
    stop_reason=st.sampled_from(["end_turn", "tool_use", "max_tokens"]) | TEXT | st.none(),
)
ANTHROPIC_EVENT = shape(
    {"type": st.sampled_from(WORDS)},
    message=ANTHROPIC_MESSAGE,
    index=INDEX,
    content_block=ANTHROPIC_BLOCK,
    delta=ANTHROPIC_DELTA,
    usage=ANTHROPIC_USAGE,
    error=shape(type=TEXT, message=TEXT),
)

GEMINI_PART = shape(
    text=TEXT,
    thought=st.booleans(),
    thoughtSignature=TEXT,
    functionCall=shape(name=TEXT, args=JSON_OBJECT, id=TEXT),
    inlineData=shape(mimeType=TEXT, data=TEXT),
)
GEMINI = shape(
    {
        "candidates": few(
            shape(
                content=shape(role=st.just("model"), parts=few(GEMINI_PART)),
                finishReason=st.sampled_from(["STOP", "MAX_TOKENS", "SAFETY", "OTHER"]) | TEXT,
                index=INDEX,
            )
        )
    },
    usageMetadata=shape(
        promptTokenCount=COUNT,
        candidatesTokenCount=COUNT,
        totalTokenCount=COUNT,
        thoughtsTokenCount=COUNT,
        cachedContentTokenCount=COUNT,
    ),
    modelVersion=TEXT,
    responseId=TEXT,
    promptFeedback=shape(blockReason=TEXT),
    error=shape(code=INT, message=TEXT, status=TEXT),
)

ANTHROPIC_TYPES = st.sampled_from(
    ["content_block_start", "content_block_delta", "content_block_stop", "ping", "error"]
)
ANTHROPIC_BLOCK_EVENT = fields(
    {"type": ANTHROPIC_TYPES}, index=INDEX, content_block=ANTHROPIC_BLOCK, delta=ANTHROPIC_DELTA
)
ANTHROPIC_STREAM = st.tuples(
    fields({"type": st.just("message_start"), "message": ANTHROPIC_MESSAGE}),
    few(ANTHROPIC_BLOCK_EVENT | ANTHROPIC_EVENT, max_size=6),
    fields({"type": st.just("message_delta")}, delta=ANTHROPIC_DELTA, usage=ANTHROPIC_USAGE),
    fields({"type": st.just("message_stop")}),
).map(lambda t: [t[0], *t[1], t[2], t[3]])

REPLIES = {"openai": OPENAI, "anthropic": ANTHROPIC_MESSAGE, "gemini": GEMINI | few(GEMINI)}
STREAMS = {
    "openai": few(OPENAI, max_size=6),
    "anthropic": ANTHROPIC_STREAM,
    "gemini": few(GEMINI, max_size=6),
}
