"""The `web` plugin (and the `:online` model suffix): a web search whose results join the
prompt, cited back as `url_citation` annotations.

The operator chooses the engine in the config file:

    web_search:
      engine: searxng              # searxng (self-hosted), brave or tavily
      url: http://127.0.0.1:8888   # searxng: the instance; brave, tavily: their API (optional)
      api_key_env: BRAVE_API_KEY   # brave, tavily
      timeout_seconds: 10          # optional

A request asking for it is searched with its last user message; the results (at most the
plugin's `max_results`, 5 by default) are put before that message, as a user turn of their
own (never as a system message: web pages get no system prompt's authority) that starts
with the plugin's `search_prompt` (OpenRouter's by default), and come back in the
answer as `url_citation` annotations (url, title, content). An engine's answer is untrusted:
each result is checked and bounded. A search that cannot be made is a 502: a request that
asked for results is never answered without them. Without a `web_search` section the plugin
(and `:online`) is a 400. Searching is not priced (the engines here are self-hosted or on
the operator's own key) and the generation records no search fields yet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from crossroads.errors import ConfigError, GatewayError
from crossroads.providers.http import UpstreamClient

log = logging.getLogger("crossroads.plugins.search")
SEARCH_ENGINES = ("searxng", "brave", "tavily")
_API = {"brave": "https://api.search.brave.com", "tavily": "https://api.tavily.com"}
MAX_RESULTS = 20
MAX_QUERY_CHARS = 400
MAX_CONTENT_CHARS = 2000
MAX_ANSWER_BYTES = 2 << 20
DEFAULT_PROMPT = (
    "A web search was conducted on {date}. Incorporate the following web search results "
    "into your response. IMPORTANT: Cite them using markdown links named using the domain "
    "of the source. Example: [nytimes.com](https://nytimes.com/some-page)."
)


@dataclass(frozen=True, slots=True)
class SearchConfig:
    engine: str
    url: str
    api_key: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Result:
    url: str
    title: str
    content: str

    def annotation(self) -> dict[str, Any]:
        citation = {"url": self.url, "title": self.title, "content": self.content}
        return {"type": "url_citation", "url_citation": citation}


def search_config(
    config: Mapping[str, Any], env: Mapping[str, str] = os.environ
) -> SearchConfig | None:
    """The config file's `web_search` section, checked (None without one)."""
    section = config.get("web_search")
    if section is None:
        return None
    known = {"engine", "url", "api_key_env", "timeout_seconds"}
    if not isinstance(section, Mapping) or set(section) - known:
        raise ConfigError(f"config: 'web_search' takes {', '.join(sorted(known))}")
    engine = section.get("engine")
    if engine not in SEARCH_ENGINES:
        raise ConfigError(f"config: 'web_search.engine' is one of {', '.join(SEARCH_ENGINES)}")
    url = section.get("url") or _API.get(str(engine))
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError("config: 'web_search.url' must be an http(s) address")
    key = None
    if engine != "searxng":
        name = section.get("api_key_env")
        key = env.get(name) if isinstance(name, str) else None
        if not key:
            raise ConfigError(f"config: web_search with {engine} needs api_key_env set")
    timeout = section.get("timeout_seconds", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigError("config: 'web_search.timeout_seconds' must be a positive number")
    return SearchConfig(str(engine), url.rstrip("/"), key, float(timeout))


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def parse_results(engine: str, answer: object, limit: int) -> list[Result]:
    """The results of an engine's answer (untrusted: anything malformed raises ValueError;
    a result without an http(s) address is skipped)."""
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    if engine == "brave":
        web = answer.get("web")
        rows = web.get("results") if isinstance(web, dict) else None
    else:
        rows = answer.get("results")
    if not isinstance(rows, list):
        raise ValueError("no results list")
    found = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        url = _text(row.get("url"), 2000)
        if urlsplit(url).scheme not in ("http", "https"):
            continue
        content = row.get("description") if engine == "brave" else row.get("content")
        found.append(
            Result(url, _text(row.get("title"), 300) or url, _text(content, MAX_CONTENT_CHARS))
        )
        if len(found) == limit:
            break
    return found


def query_of(body: Mapping[str, Any]) -> str:
    """What is searched: the last user message's text."""
    for message in reversed(body.get("messages") or ()):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        return str(content or "").strip()[:MAX_QUERY_CHARS]
    return ""


def with_results(body: dict[str, Any], results: list[Result], prompt: str | None) -> dict[str, Any]:
    """`body` with the results in a system message before its last user message."""
    today = datetime.now(UTC).date().isoformat()
    head = (prompt or DEFAULT_PROMPT).replace("{date}", today)
    listed = "\n\n".join(
        f"[{n}] {r.title} ({r.url})\n{r.content}" for n, r in enumerate(results, 1)
    )
    # a user turn, not a system message: pages from the web get no system prompt's authority
    note = {"role": "user", "content": f"{head}\n\n{listed}" if results else head}
    messages = list(body.get("messages") or [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    return {**body, "messages": [*messages[:last_user], note, *messages[last_user:]]}


class WebSearch:
    """The configured engine, asked through the gateway's upstream client."""

    def __init__(self, client: UpstreamClient, config: SearchConfig) -> None:
        self.client, self.config = client, config

    async def search(self, query: str, limit: int) -> list[Result]:
        config = self.config
        try:
            if config.engine == "searxng":
                url = f"{config.url}/search?" + urlencode({"q": query, "format": "json"})
                answer = await self.client.get_json(url, timeout=config.timeout)
            elif config.engine == "brave":
                url = f"{config.url}/res/v1/web/search?" + urlencode({"q": query, "count": limit})
                headers = {
                    "X-Subscription-Token": config.api_key or "",
                    "Accept": "application/json",
                }
                answer = await self.client.get_json(url, timeout=config.timeout, headers=headers)
            else:
                status, answer = await self.client.post_json(
                    f"{config.url}/search",
                    {"query": query, "max_results": limit},
                    headers={"Authorization": f"Bearer {config.api_key}"},
                    timeout=config.timeout,
                    limit=MAX_ANSWER_BYTES,
                )
                if status != 200:
                    raise ValueError(f"status {status}")
            return parse_results(config.engine, answer, limit)
        except (OSError, TimeoutError, ValueError) as error:
            log.warning("web search (%s) failed: %s", config.engine, error)
            raise GatewayError(
                502, f"The web search could not be made (the {config.engine} engine failed)"
            ) from None
