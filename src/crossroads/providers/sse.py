"""A server-sent-events decoder (the WHATWG event-stream format), pure and incremental.

Feed it lines; it returns the `data` of each complete event. Comments (`: ...`) and
fields other than `data` are skipped, as the format prescribes for our use. The input is
untrusted: a line that is not UTF-8 raises `UnicodeDecodeError`, an event whose data grows
past `max_event_bytes` raises `OverflowError`.
"""

from __future__ import annotations


class SSEDecoder:
    __slots__ = ("_data", "_size", "max_event_bytes")

    def __init__(self, *, max_event_bytes: int | None = None) -> None:
        self._data: list[str] = []
        self._size = 0
        self.max_event_bytes = max_event_bytes

    def feed(self, raw_line: bytes) -> str | None:
        """The event's data when `raw_line` ends an event, else None."""
        line = raw_line.decode("utf-8").rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data, self._data, self._size = "\n".join(self._data), [], 0
            return data
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._size += len(raw_line)
            if self.max_event_bytes is not None and self._size > self.max_event_bytes:
                raise OverflowError("stream event too large")
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> str | None:
        """Data of a last event the stream ended without a blank line after."""
        if not self._data:
            return None
        data, self._data, self._size = "\n".join(self._data), [], 0
        return data
