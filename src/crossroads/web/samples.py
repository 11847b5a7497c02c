"""Sample code of a model's API tab, written against this server's own base URL.

Every sample runs as written once `CROSSROADS_API_KEY` holds a key of this server: curl
(a shell), Python with the openai SDK or the openrouter SDK, and TypeScript (Node 18+,
an ES module: `fetch` and top-level `await`). Model ids and URLs are written as JSON
strings, which are valid string literals in all four languages.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

KEY_VARIABLE = "CROSSROADS_API_KEY"
QUESTION = "What is the meaning of life?"
REASONING_QUESTION = "How many r's are in the word 'strawberry'?"
APP_URL = "https://your-app.example"
APP_TITLE = "Your App"


@dataclass(frozen=True, slots=True)
class CodeSample:
    """One runnable sample: `id` is unique on the page (the copy button's target)."""

    id: str
    label: str  # the tab-like caption: "curl", "Python (openai)", ...
    language: str  # for the <code> class: shell | python | typescript
    code: str


def _q(text: str) -> str:
    """A string literal valid in Python, TypeScript and JSON."""
    return json.dumps(text)


def curl(base: str, model: str) -> str:
    message = json.dumps({"role": "user", "content": QUESTION})
    body = f'{{\n  "model": {_q(model)},\n  "messages": [\n    {message}\n  ]\n}}'
    return (
        f"curl {shlex.quote(base + '/chat/completions')} \\\n"
        '  -H "Content-Type: application/json" \\\n'
        f'  -H "Authorization: Bearer ${KEY_VARIABLE}" \\\n'
        f'  -H "HTTP-Referer: {APP_URL}" \\\n'
        f'  -H "X-Title: {APP_TITLE}" \\\n'
        f"  -d '{body}'"
    )


def python_openai(base: str, model: str) -> str:
    return f"""import os

from openai import OpenAI

client = OpenAI(
    base_url={_q(base)},
    api_key=os.environ[{_q(KEY_VARIABLE)}],
)

completion = client.chat.completions.create(
    extra_headers={{
        "HTTP-Referer": {_q(APP_URL)},  # optional: your app's URL, for the app rankings
        "X-Title": {_q(APP_TITLE)},  # optional: your app's name
    }},
    model={_q(model)},
    messages=[{{"role": "user", "content": {_q(QUESTION)}}}],
)
print(completion.choices[0].message.content)
"""


def python_openrouter(base: str, model: str) -> str:
    return f"""import os

from openrouter import OpenRouter

with OpenRouter(
    api_key=os.environ[{_q(KEY_VARIABLE)}],
    server_url={_q(base)},
    http_referer={_q(APP_URL)},  # optional: your app's URL, for the app rankings
    x_open_router_title={_q(APP_TITLE)},  # optional: your app's name
) as client:
    response = client.chat.send(
        model={_q(model)},
        messages=[{{"role": "user", "content": {_q(QUESTION)}}}],
    )
    print(response.choices[0].message.content)
"""


def typescript(base: str, model: str) -> str:
    return f"""const response = await fetch({_q(base + "/chat/completions")}, {{
  method: "POST",
  headers: {{
    Authorization: `Bearer ${{process.env.{KEY_VARIABLE}}}`,
    "HTTP-Referer": {_q(APP_URL)}, // optional: your app's URL, for the app rankings
    "X-Title": {_q(APP_TITLE)}, // optional: your app's name
    "Content-Type": "application/json",
  }},
  body: JSON.stringify({{
    model: {_q(model)},
    messages: [{{ role: "user", content: {_q(QUESTION)} }}],
  }}),
}});
const data = await response.json();
console.log(data.choices[0].message.content);
"""


def python_reasoning(base: str, model: str) -> str:
    return f"""import os

from openai import OpenAI

client = OpenAI(base_url={_q(base)}, api_key=os.environ[{_q(KEY_VARIABLE)}])
messages = [{{"role": "user", "content": {_q(REASONING_QUESTION)}}}]

first = client.chat.completions.create(
    model={_q(model)},
    messages=messages,
    extra_body={{"reasoning": {{"effort": "high"}}}},
)
message = first.choices[0].message
print("reasoning:", getattr(message, "reasoning", None))
print("answer:", message.content)

# Pass the answer back with its reasoning_details, unchanged, so the model can
# continue reasoning from where it left off.
messages.append(
    {{
        "role": "assistant",
        "content": message.content,
        "reasoning_details": getattr(message, "reasoning_details", None),
    }}
)
messages.append({{"role": "user", "content": "Are you sure? Think it over again."}})
second = client.chat.completions.create(
    model={_q(model)},
    messages=messages,
    extra_body={{"reasoning": {{"effort": "high"}}}},
)
print("second answer:", second.choices[0].message.content)
"""


def api_samples(base: str, model: str) -> list[CodeSample]:
    """The API tab's samples for `model` against the API at `base` (".../api/v1")."""
    return [
        CodeSample("sample-curl", "curl", "shell", curl(base, model)),
        CodeSample("sample-openai", "Python (openai SDK)", "python", python_openai(base, model)),
        CodeSample(
            "sample-openrouter",
            "Python (openrouter SDK)",
            "python",
            python_openrouter(base, model),
        ),
        CodeSample(
            "sample-typescript", "TypeScript (fetch)", "typescript", typescript(base, model)
        ),
    ]


def reasoning_sample(base: str, model: str) -> CodeSample:
    """The `reasoning` example, passing `reasoning_details` back on the next turn."""
    return CodeSample(
        "sample-reasoning",
        "Python (openai SDK), reasoning",
        "python",
        python_reasoning(base, model),
    )
