"""What a simulated provider answers, whatever wire protocol asked: deterministic, from the request.

The reply echoes the last user message after "<name> says:", calls tools when offered
(arguments sampled from each tool's JSON schema), thinks out loud when reasoning is
requested, and honours the completion limit. Protocol modules translate an `Ask` in
and a `Reply` out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Ask:
    last_user_text: str
    prompt_words: int
    messages: int
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tool_choice: str = "auto"  # auto, none, required, or a tool name
    parallel_tools: bool = True
    max_tokens: int | None = None
    reasoning: bool = False
    cache_marks: bool = False
    json_schema: dict[str, Any] | None = None


@dataclass
class Reply:
    tokens: list[str]
    finish: str  # stop, length, tool_calls
    calls: list[tuple[str, str, str]]  # (id, name, JSON arguments)
    thinking: str | None
    signature: str | None
    prompt_tokens: int
    cached_tokens: int
    # How a broken provider misreports (see `Behaviour`): fields merged into the usage the
    # protocol reports, and a raw finish reason (any JSON value) in place of the real one.
    usage_override: dict[str, Any] = field(default_factory=dict)
    finish_override: Any = None

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens) + len((self.thinking or "").split())


def sample(schema: dict[str, Any]) -> Any:
    """A value that fits a JSON schema (the simple part of the vocabulary)."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: sample(v) for k, v in props.items() if k in (schema.get("required") or props)}
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": "example", "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(
        str(kind)
    )


def answer(ask: Ask, name: str, max_reply_tokens: int, *, text: str | None = None) -> Reply:
    """The reply to `ask`: `text` when given (split at its spaces, so that the tokens
    joined again are exactly it), else what `name` says of the question."""
    calls: list[tuple[str, str, str]] = []
    tools = ask.tools
    if tools and ask.tool_choice != "none":
        if ask.tool_choice not in ("auto", "required"):
            tools = [t for t in tools if t[0] == ask.tool_choice] or tools[:1]
        elif not ask.parallel_tools:
            tools = tools[:1]
        calls = [
            (f"call_{i}", n, orjson.dumps(sample(s)).decode()) for i, (n, s) in enumerate(tools)
        ]
    thinking = f"The user wrote {len(ask.last_user_text.split())} words." if ask.reasoning else None
    signature = hashlib.sha256((thinking or "").encode()).hexdigest()[:24] if thinking else None
    if text is not None:
        tokens = text.split(" ")
    elif ask.json_schema is not None:
        tokens = [orjson.dumps(sample(ask.json_schema)).decode()]
    else:
        tokens = [name, "says:", *ask.last_user_text.split()][:max_reply_tokens]
    finish = "tool_calls" if calls else "stop"
    if ask.max_tokens and ask.max_tokens < len(tokens) and not calls:
        tokens, finish = tokens[: ask.max_tokens], "length"
    prompt = ask.prompt_words + 3 * ask.messages
    return Reply(
        tokens, finish, calls, thinking, signature, prompt, min(prompt, 4) if ask.cache_marks else 0
    )
