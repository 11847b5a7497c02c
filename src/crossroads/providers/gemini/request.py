"""OpenRouter chat request -> Google Gemini generateContent request. Pure functions.

System messages become `systemInstruction`, assistant turns `model` turns, tool results
`functionResponse` parts (named after the call they answer), images and PDFs
`inlineData` / `fileData`, `response_format` a response JSON schema and `reasoning`
the thinking budget. Thought signatures sent back in `reasoning_details` return to the
function calls they came with.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from crossroads.providers.reasoning import resolve_reasoning
from crossroads.providers.wire import append_turn, json_object, parse_tool_arguments, split_data_url
from crossroads.schema.catalog import Endpoint

FORMAT = "google-gemini-v1"


def _media(url: str, fallback: str) -> dict[str, Any]:
    inline = split_data_url(url, fallback)
    if inline:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or fallback
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            parts.append(_media(part["image_url"]["url"], "image/jpeg"))
        elif kind == "file":
            file = part.get("file") or {}
            if file.get("file_data"):
                parts.append(_media(file["file_data"], "application/pdf"))
        elif kind == "input_audio":
            audio = part["input_audio"]
            parts.append(
                {
                    "inlineData": {
                        "mimeType": f"audio/{audio.get('format', 'wav')}",
                        "data": audio["data"],
                    }
                }
            )
    return parts


def _signatures(message: dict[str, Any]) -> dict[str | None, str]:
    """Thought signatures by the tool call id they travel with (None: the first call)."""
    out: dict[str | None, str] = {}
    for detail in message.get("reasoning_details") or []:
        if detail.get("format") not in (None, FORMAT):
            continue
        signature = (
            detail.get("data")
            if detail.get("type") == "reasoning.encrypted"
            else detail.get("signature")
        )
        if signature:
            out.setdefault(detail.get("id"), signature)
    return out


def _model_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts = _parts(message.get("content"))
    signatures = _signatures(message)
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        args = parse_tool_arguments(fn.get("arguments"))
        part: dict[str, Any] = {"functionCall": {"name": fn.get("name"), "args": args}}
        signature = signatures.get(call.get("id")) or (signatures.get(None) if i == 0 else None)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    append_turn(contents, role, parts, items_key="parts")


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str | None, str | None] = {}  # tool call id -> function name
    for m in messages:
        role = m.get("role")
        if role in ("system", "developer"):
            system += _parts(m.get("content"))
        elif role == "user":
            _append(contents, "user", _parts(m.get("content")))
        elif role == "assistant":
            for call in m.get("tool_calls") or []:
                call_names[call.get("id")] = (call.get("function") or {}).get("name")
            _append(contents, "model", _model_parts(m))
        elif role == "tool":
            content = m.get("content")
            text = (
                content
                if isinstance(content, str)
                else " ".join(p.get("text", "") for p in content or [])
            )
            response = json_object(
                text, wrap_key="content"
            )  # a tool's text result: {"content": ...}
            name = call_names.get(m.get("tool_call_id")) or m.get("name") or "tool"
            _append(contents, "user", [{"functionResponse": {"name": name, "response": response}}])
    return system, contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    return None


_GENERATION_FIELDS = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
}


def to_gemini_body(body: dict[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    system, contents = _contents(body.get("messages") or [])
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {
        v: body[k] for k, v in _GENERATION_FIELDS.items() if body.get(k) is not None
    }
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit:
        config["maxOutputTokens"] = limit
    if body.get("stop"):
        config["stopSequences"] = (
            [body["stop"]] if isinstance(body["stop"], str) else list(body["stop"])
        )
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    spec = resolve_reasoning(body)
    if spec is not None:
        if spec.enabled:
            budget = spec.budget(limit or endpoint.max_completion_tokens or 8192)
            config["thinkingConfig"] = {
                "thinkingBudget": budget,
                "includeThoughts": not spec.exclude,
            }
        else:
            config["thinkingConfig"] = {"thinkingBudget": 0}
    if config:
        out["generationConfig"] = config
    declarations = [
        {
            "name": t["function"]["name"],
            **(
                {"description": t["function"]["description"]}
                if t["function"].get("description")
                else {}
            ),
            "parameters": t["function"].get("parameters") or {"type": "object", "properties": {}},
        }
        for t in body.get("tools") or []
        if t.get("type") == "function" and t.get("function")
    ]
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config:
            out["toolConfig"] = tool_config
    return out
