"""OpenRouter's `plugins`: what the gateway itself does to a request or its answer.

A request's `plugins` array names each plugin by `id`. The ones implemented here are in
`AVAILABLE`; any other that is enabled is refused with a 400 naming it, never ignored (a
plugin switched off, `enabled: false`, asks for nothing and is accepted whatever its id).

- `response-healing` (`healing.py`): a non-streamed reply asked for as JSON
  (`response_format` `json_object` or `json_schema`) that is almost JSON is repaired and
  checked against the schema; one that cannot be is returned as it came, and the
  generation record says which. A stream is passed on as it comes (as OpenRouter does).
"""

from __future__ import annotations

from dataclasses import dataclass

from crossroads.errors import GatewayError
from crossroads.schema.chat import ChatRequest, ResponseFormat

HEALING = "response-healing"
AVAILABLE = (HEALING,)
_JSON_FORMATS = ("json_object", "json_schema")


@dataclass(frozen=True, slots=True)
class Plugins:
    """What the request's plugins ask of this request."""

    healing: ResponseFormat | None = None  # the JSON format a whole answer is healed to


NONE = Plugins()


def plugins_of(request: ChatRequest) -> Plugins:
    """The request's plugins, checked: a 400 for one enabled that is not implemented."""
    if not request.plugins:
        return NONE
    wanted = set()
    for plugin in request.plugins:
        if not plugin.enabled:
            continue
        if plugin.id not in AVAILABLE:
            raise GatewayError(
                400,
                f"Plugin '{plugin.id}' is not available on this server "
                f'(available: {", ".join(AVAILABLE)}); send it with "enabled": false '
                "or leave it out",
            )
        wanted.add(plugin.id)
    fmt = request.response_format
    if HEALING not in wanted or request.stream or fmt is None or fmt.type not in _JSON_FORMATS:
        return NONE
    return Plugins(healing=fmt)
