"""A server-sent-events decoder (the WHATWG event-stream format), pure and incremental.

Feed it lines; it returns the `data` of each complete event. Comments (`: ...`) and
fields other than `data` are skipped, as the format prescribes for our use.
"""

from __future__ import annotations


class SSEDecoder:
    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, raw_line: bytes) -> str | None:
        """The event's data when `raw_line` ends an event, else None."""
        line = raw_line.decode("utf-8").rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """Data of a last event the stream ended without a blank line after."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data
