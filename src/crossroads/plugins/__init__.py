"""OpenRouter's `plugins`: what the gateway itself does to a request or its answer.

A request's `plugins` array names each plugin by `id`. The ones implemented here are in
`AVAILABLE`; any other that is enabled is refused with a 400 naming it, never ignored (a
plugin switched off, `enabled: false`, asks for nothing and is accepted whatever its id).

- `context-compression` (`compression.py`, OpenRouter's "middle-out", also asked for
  with `transforms: ["middle-out"]`): a prompt too long for an endpoint's context loses
  messages from its middle. On by default for endpoints of 8,192 tokens of context or
  less; `enabled: false` (or `transforms: []`) turns it off, enabled turns it on for all.
- `file-parser` (`files.py`): PDFs in `file` parts become text for a model that does not
  read files; `pdf.engine` `native` sends them as they are (to a model that reads files).
- `moderation` (`moderation.py`): the user messages checked by the operator's moderation
  service first; flagged input is a 403.
- `web` (`search.py`), also asked for by a model id ending in `:online`: a web search of
  the last user message, its results in the prompt and cited in the answer.
- `response-healing` (`healing.py`): a non-streamed reply asked for as JSON
  (`response_format` `json_object` or `json_schema`) that is almost JSON is repaired and
  checked against the schema; one that cannot be is returned as it came, and the
  generation record says which. A stream is passed on as it comes (as OpenRouter does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crossroads.errors import GatewayError
from crossroads.plugins.compression import SMALL_CONTEXT
from crossroads.plugins.files import PDF_ENGINES
from crossroads.schema.chat import ChatRequest, ResponseFormat

HEALING = "response-healing"
COMPRESSION = "context-compression"
FILE_PARSER = "file-parser"
MODERATION = "moderation"
WEB = "web"
AVAILABLE = (COMPRESSION, FILE_PARSER, MODERATION, HEALING, WEB)
ONLINE = ":online"  # a model id's suffix: the web plugin on
SERVER_TOOL_PREFIX = "openrouter:"
TRANSFORMS = ("middle-out",)
_JSON_FORMATS = ("json_object", "json_schema")


@dataclass(frozen=True, slots=True)
class WebAsk:
    """What the web plugin was asked for."""

    max_results: int = 5
    search_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class Plugins:
    """What the request's plugins ask of this request."""

    healing: ResponseFormat | None = None  # the JSON format a whole answer is healed to
    compression: Literal["auto", "on", "off"] = "auto"
    pdf_engine: str | None = None  # file-parser's engine asked for; None: by the model
    parses_files: bool = True  # file-parser not turned off
    moderation: bool = False  # the input is checked by the moderation service first
    web: WebAsk | None = None  # a web search first

    def compresses(self, context_length: int | None) -> bool:
        """Whether a prompt too long for an endpoint of this context is compressed."""
        if context_length is None or self.compression == "off":
            return False
        return self.compression == "on" or context_length <= SMALL_CONTEXT


NONE = Plugins()


def plugins_of(request: ChatRequest, *, online: bool = False) -> Plugins:
    """The request's plugins, checked: a 400 for one enabled that is not implemented, and
    for an `openrouter:*` server tool (none runs here: it is not passed on to a provider
    that would refuse it or answer without it); `online`: the model was named with
    `:online` (the web plugin, with its defaults)."""
    for tool in request.tools or ():
        if tool.type.startswith(SERVER_TOOL_PREFIX):
            raise GatewayError(
                400,
                f"Server tool '{tool.type}' is not available on this server; the 'web' "
                "plugin searches the web",
            )
    if not request.plugins and request.transforms is None and not online:
        return NONE
    wanted, unwanted = set(), set()
    engine: str | None = None
    web = WebAsk() if online else None
    for transform in request.transforms or ():
        if transform not in TRANSFORMS:
            raise GatewayError(
                400, f"Transform '{transform}' is not available (available: middle-out)"
            )
        wanted.add(COMPRESSION)
    if request.transforms == []:  # OpenRouter's way of turning middle-out off
        unwanted.add(COMPRESSION)
    for plugin in request.plugins or ():
        if not plugin.enabled:
            unwanted.add(plugin.id)
            continue
        if plugin.id not in AVAILABLE:
            raise GatewayError(
                400,
                f"Plugin '{plugin.id}' is not available on this server "
                f'(available: {", ".join(AVAILABLE)}); send it with "enabled": false '
                "or leave it out",
            )
        wanted.add(plugin.id)
        if plugin.id == WEB:
            web = WebAsk(plugin.max_results or 5, plugin.search_prompt)
        if plugin.id == FILE_PARSER and plugin.pdf is not None and plugin.pdf.engine:
            if plugin.pdf.engine not in PDF_ENGINES:
                raise GatewayError(
                    400,
                    f"PDF engine '{plugin.pdf.engine}' is not available on this server "
                    f"(available: {', '.join(PDF_ENGINES)})",
                )
            engine = plugin.pdf.engine
    compression: Literal["auto", "on", "off"] = (
        "off" if COMPRESSION in unwanted else "on" if COMPRESSION in wanted else "auto"
    )
    fmt = request.response_format
    heals = HEALING in wanted and not request.stream and fmt is not None
    healing = fmt if heals and fmt is not None and fmt.type in _JSON_FORMATS else None
    return Plugins(
        healing=healing,
        compression=compression,
        pdf_engine=engine,
        parses_files=FILE_PARSER not in unwanted,
        moderation=MODERATION in wanted,
        web=None if WEB in unwanted else web,
    )
