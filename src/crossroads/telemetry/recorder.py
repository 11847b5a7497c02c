"""Generation records are written in batches by a background task, never on the request path.

`submit()` only appends to an in-memory queue. The writer flushes every `interval`
seconds or `batch_size` records; `close()` drains everything before shutdown. A batch
that fails to write is kept and retried; if the database is still unreachable at
shutdown, the records go to a spool file that the next start writes first, so no
record is dropped. Recent records stay readable from memory, so `/generation` answers
right after a response.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson

from crossroads.schema.generation import GenerationRecord

log = logging.getLogger("crossroads.recorder")


class RecordStore(Protocol):
    """Where the records go (`storage.GenerationStore`)."""

    async def insert_many(self, records: Sequence[GenerationRecord]) -> None: ...

    async def get(self, generation_id: str) -> GenerationRecord | None: ...


class Recorder:
    def __init__(
        self,
        store: RecordStore,
        *,
        interval: float = 0.25,
        batch_size: int = 500,
        recent: int = 10_000,
        spool: Path | None = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._interval = interval
        self._batch_size = batch_size
        self._pending: list[GenerationRecord] = []
        self._recent: OrderedDict[str, GenerationRecord] = OrderedDict()
        self._recent_max = recent
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Write what an earlier shutdown spooled, then start the background writer."""
        if self._spool is not None and self._spool.exists():
            for line in self._spool.read_bytes().splitlines():
                row = orjson.loads(line)
                row["created_at"] = datetime.fromisoformat(row["created_at"])
                self._pending.append(GenerationRecord(**row))
            await self.flush()
            self._spool.unlink()
            log.warning("wrote generation records spooled at the last shutdown")
        self._task = asyncio.create_task(self._run(), name="crossroads-recorder")

    def submit(self, record: GenerationRecord) -> None:
        self._pending.append(record)
        self._recent[record.id] = record
        if len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)
        if len(self._pending) >= self._batch_size:
            self._wakeup.set()

    async def get(self, generation_id: str) -> GenerationRecord | None:
        return self._recent.get(generation_id) or await self._store.get(generation_id)

    async def flush(self) -> None:
        while self._pending:
            batch = self._pending[: self._batch_size]
            await self._store.insert_many(batch)
            del self._pending[: len(batch)]

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._interval)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                await self.flush()
            except Exception:  # keep the batch; the next round retries it
                log.exception(
                    "writing %d generation records failed; will retry", len(self._pending)
                )

    async def close(self, retries: int = 3) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        for attempt in range(retries):
            try:
                await self.flush()
                return
            except Exception:
                log.exception(
                    "writing %d generation records at shutdown failed", len(self._pending)
                )
                await asyncio.sleep(0.2 * 2**attempt)
        if self._spool is None:
            raise RuntimeError(f"{len(self._pending)} generation records could not be written")
        self._spool.parent.mkdir(parents=True, exist_ok=True)
        with self._spool.open("ab") as spool:
            for record in self._pending:
                spool.write(orjson.dumps(record.to_row()) + b"\n")
        log.error("spooled %d generation records to %s", len(self._pending), self._spool)
        self._pending.clear()
