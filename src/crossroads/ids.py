"""Unique ids for requests and admission tickets, from the operating system's randomness.

`secrets.token_hex` asks the kernel for a few bytes on every call (one system call per id,
two per request). `RandomIds` reads them a block at a time and hands them out: the same
unpredictable bytes, one system call per few hundred ids. One per gateway (per process).
"""

from __future__ import annotations

import os

_BLOCK = 4096


class RandomIds:
    def __init__(self, block: int = _BLOCK) -> None:
        self._block = block
        self._buffer = b""
        self._at = 0

    def hex(self, nbytes: int) -> str:
        """`nbytes` random bytes as `2 * nbytes` hex digits; never the same bytes twice."""
        end = self._at + nbytes
        if end > len(self._buffer):
            self._buffer, self._at, end = os.urandom(max(self._block, nbytes)), 0, nbytes
        chunk = self._buffer[self._at : end]
        self._at = end
        return chunk.hex()
