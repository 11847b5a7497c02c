"""Generation records: journaled before the response ends, written to the database in batches.

`submit()` runs on the request path, before the last byte of the response is sent (the
router calls it from `Run.record`). It fits the record to the table (`store.prepare`:
text cut to the column length, integers clamped), keeps it readable in memory (so
`/generation` answers at once) and appends it as one JSON line to the journal
(`journal.py`): a plain write, which the operating system keeps if the process dies.

A background writer, every `interval` seconds or `batch_size` records, seals the
journal's active segment, fsyncs it, inserts its rows and deletes it. At start, the
segments left behind (a crash, a shutdown while the database was down, the old
shutdown spool) are written first: the gateway sums key spend from the table after
that. Inserts skip ids already stored, so a segment written twice counts once.

The request path does one blocking call: the journal's `os.write`, which returns once
the bytes are in the operating system's page cache (microseconds; longer only if the
kernel throttles writers under heavy dirty-page pressure). It is kept on the event loop
on purpose: a thread hop per request would cost more than it saves, and the record is
safe from a process crash as soon as `submit()` returns. Everything slow (fsync, reads,
inserts, the quarantine file) runs in the background writer, off the loop. Nothing is
dropped silently:
- a batch the database refuses is bisected; a row refused for its content (a value out
  of range, too long, a constraint; not a connection failure) goes to the quarantine
  file (`rejected-generations.jsonl`: the row and the error) and is counted in
  `rows_rejected`; every other row is written;
- when the database cannot be reached, the rows stay (in memory and in the journal) and
  a later round retries them, backing off (up to `_MAX_BACKOFF` seconds) while it fails;
  rows of a batch already written or quarantined are not sent or counted again;
- the queue held in memory is bounded by `max_pending` rows: past it, records are kept
  only in the journal (`rows_spilled`) and read back from it when the database catches up;
- a journal line that cannot be read back is quarantined as text.
Only if the journal cannot be written (a full disk) are records held in memory alone;
past `max_pending` of those, new ones are dropped, logged and counted (`rows_dropped`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from crossroads.schema.generation import GenerationRecord
from crossroads.telemetry.journal import Journal, append_durably, count_lines, read_lines

log = logging.getLogger("crossroads.recorder")

_MAX_BACKOFF = 5.0  # seconds between the writer's rounds while the database is down

Row = dict[str, Any]


class RecordStore(Protocol):
    """Where the records go (`storage.GenerationStore`)."""

    def prepare(self, row: Mapping[str, Any]) -> Row:
        """The row fitted to the table (never raises for a row of `to_row()`'s shape)."""

    async def insert_many(self, rows: Sequence[Mapping[str, Any]], *, fitted: bool) -> None:
        """Insert, skipping ids already stored; `fitted`: the rows went through `prepare`."""

    def refused(self, error: BaseException) -> bool:
        """Whether an insert failed for the rows' content (it would fail again)."""

    async def get(self, generation_id: str) -> GenerationRecord | None: ...


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """The recorder's counters, since the process started (see the module docstring)."""

    queue_depth: int  # records submitted or replayed, not yet committed or quarantined
    rows_written: int  # committed
    rows_rejected: int  # refused by the database for their content, quarantined
    rows_spilled: int  # kept only in the journal because the memory queue was full
    rows_dropped: int  # lost: neither the journal nor the memory queue could take them
    journal_errors: int  # failed journal appends or syncs
    write_failures: int  # inserts that failed for want of the database; retried
    segments_pending: int  # journal files not yet written to the database, the active one too


@dataclass(eq=False, slots=True)
class _Pending:
    """Rows waiting for the database: a sealed journal segment and/or rows in memory."""

    path: Path | None  # the journal file holding them, deleted once they are all written
    rows: list[Row] | None  # in memory; None: read back from `path`
    rows_done: int = 0  # rows of `rows` written or quarantined so far
    offset: int = 0  # bytes of `path` written or quarantined so far (when `rows` is None)
    # ids of the current batch already written or quarantined: when a later part of the
    # batch fails for want of the database, the retry skips them
    settled: set[str] = field(default_factory=set)


class Recorder:
    def __init__(
        self,
        store: RecordStore,
        *,
        journal: Journal | None = None,
        quarantine: Path | None = None,
        interval: float = 0.25,
        batch_size: int = 64,
        recent: int = 10_000,
        max_pending: int = 10_000,
    ) -> None:
        self._store = store
        self._journal = journal
        self._quarantine = quarantine
        self._interval = interval
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._recent: OrderedDict[str, GenerationRecord] = OrderedDict()
        self._recent_max = recent
        self._active: list[Row] | None = []  # journaled since the last seal; None once spilled
        self._loose: list[Row] = []  # rows the journal could not take
        self._sealed: list[_Pending] = []
        self._since_seal = 0
        self._held = 0  # rows in memory in `_active`, `_loose` and `_sealed`
        self._depth = 0
        self._written = self._rejected = self._spilled = self._dropped = 0
        self._journal_errors = self._write_failures = 0
        self._failing = False  # the last insert could not reach the database
        self._rejects: list[bytes] = []  # quarantine lines not yet written to the file
        self._wakeup = asyncio.Event()
        self._writing = asyncio.Lock()  # one writer at a time: the task, flush(), close()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Write what earlier processes left in the journal, then start the background writer.
        Never fails: what cannot be read is quarantined, what cannot be written waits."""
        if self._journal is not None:
            try:
                adopted = self._journal.open()
            except OSError:
                log.exception(
                    "cannot open the journal at %s: records are held in memory only",
                    self._journal.root,
                )
                self._journal = None
                adopted = []
            for path in adopted:
                try:
                    self._depth += await asyncio.to_thread(count_lines, path)
                except OSError:
                    log.exception("cannot read the journal file %s", path)
                self._sealed.append(_Pending(path, None))
            if adopted:
                log.warning("replaying %d journal files left by an earlier run", len(adopted))
        async with self._writing:
            replayed = await self._write_sealed()
        if not replayed:
            log.error("the journal could not be replayed yet; the background writer retries")
        self._task = asyncio.create_task(self._run(), name="crossroads-recorder")

    def submit(self, record: GenerationRecord) -> None:
        """Keep `record`: in memory at once, in the journal before this returns. Never raises."""
        row = record.to_row()
        try:
            fitted = self._store.prepare(row)
            if fitted != row:  # readable as it will be stored
                record, row = GenerationRecord.from_row(fitted), fitted
        except Exception:  # a bug in fitting must not cost the record
            log.exception("cannot fit generation record %s; keeping it as it is", record.id)
        self._recent[record.id] = record
        if len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)
        self._depth += 1
        self._since_seal += 1
        if self._since_seal >= self._batch_size and not self._failing:  # not per request
            self._wakeup.set()  # while the database is down: the writer backs off
        if self._journal is not None and self._journal.is_open:
            try:
                self._journal.append(orjson.dumps(row, default=str) + b"\n")
            except Exception:
                self._journal_errors += 1
                if self._journal_errors % 1000 == 1:  # once, then every 1000th: not per request
                    log.exception("cannot journal generation records (%d)", self._journal_errors)
            else:
                self._hold(row)
                return
        if self._held >= self._max_pending:
            self._dropped += 1
            self._depth -= 1
            log.error("generation record dropped (no journal, queue full): %s", row)
            return
        self._loose.append(row)
        self._held += 1

    def _hold(self, row: Row) -> None:
        """Keep a journaled row in memory too, unless the queue is full: then the active
        segment's rows live in the journal only."""
        if self._active is None:
            self._spilled += 1
        elif self._held >= self._max_pending:
            self._spilled += len(self._active) + 1
            self._held -= len(self._active)
            self._active = None
            log.warning("generation queue full: records are kept in the journal only")
        else:
            self._active.append(row)
            self._held += 1

    async def get(self, generation_id: str) -> GenerationRecord | None:
        """The record: from memory, unless it names an app, whose id the database assigns
        when the record is written (read back from there once it is)."""
        recent = self._recent.get(generation_id)
        if recent is not None and not recent.http_referer:
            return recent
        try:
            return await self._store.get(generation_id) or recent
        except Exception:  # the database is down: the record in memory, without its app
            if recent is None:
                raise
            log.warning("cannot read generation %s; answering from memory", generation_id)
            return recent

    def stats(self) -> RecorderStats:
        segments = sum(1 for p in self._sealed if p.path is not None)
        if self._journal is not None and self._journal.active_lines:
            segments += 1
        return RecorderStats(
            queue_depth=self._depth,
            rows_written=self._written,
            rows_rejected=self._rejected,
            rows_spilled=self._spilled,
            rows_dropped=self._dropped,
            journal_errors=self._journal_errors,
            write_failures=self._write_failures,
            segments_pending=segments,
        )

    async def flush(self) -> bool:
        """Write everything submitted so far; False if the database could not be reached."""
        async with self._writing:
            await self._seal()
            return await self._write_sealed()

    async def _run(self) -> None:
        failed_rounds = 0
        while not self._closing:
            delay = self._interval
            if self._failing:  # back off: one attempt per round, not one per request
                failed_rounds = min(failed_rounds + 1, 16)
                delay = max(self._interval, min(self._interval * 2**failed_rounds, _MAX_BACKOFF))
            else:
                failed_rounds = 0
            try:
                await asyncio.wait_for(self._wakeup.wait(), delay)
            except TimeoutError:
                pass
            self._wakeup.clear()
            try:
                if not self._sealed:
                    await self.flush()
                    continue
                async with self._writing:  # the database is behind: the active segment grows
                    await self._sync_active()
                    await self._write_sealed()
            except Exception:  # a bug here must not stop the writer
                log.exception("the generation writer's round failed; retrying")

    async def _seal(self) -> None:
        """Move the rows submitted since the last seal to the pending list, synced to disk."""
        rows, self._active = self._active, []
        loose, self._loose = self._loose, []
        self._since_seal = 0
        sealed = self._journal.seal() if self._journal is not None else None
        if sealed is not None:
            try:
                await asyncio.to_thread(sealed.sync_and_close)
            except OSError:
                self._journal_errors += 1
                log.exception("cannot sync the journal file %s", sealed.path)
            self._sealed.append(_Pending(sealed.path, rows))
        elif rows:
            self._sealed.append(_Pending(None, rows))
        if loose:
            self._sealed.append(_Pending(None, loose))

    async def _sync_active(self) -> None:
        active = self._journal.active_to_sync() if self._journal is not None else None
        if active is not None:
            try:
                await asyncio.to_thread(active.sync)
            except OSError:
                self._journal_errors += 1
                log.exception("cannot sync the journal")

    async def _write_sealed(self) -> bool:
        """Write the pending rows, oldest first, deleting each journal file once written."""
        while self._sealed:
            pending = self._sealed[0]
            if not await self._write(pending):
                return False
            self._sealed.pop(0)
            if pending.rows is not None:
                self._held -= len(pending.rows)
            if pending.path is not None:
                try:
                    pending.path.unlink(missing_ok=True)
                except OSError:
                    log.exception("cannot delete the written journal file %s", pending.path)
        return True

    async def _write(self, pending: _Pending) -> bool:
        while True:
            if pending.rows is not None:
                chunk = pending.rows[pending.rows_done : pending.rows_done + self._batch_size]
                if not chunk:
                    return True
                batch = [row for row in chunk if row["id"] not in pending.settled]
                if batch and not await self._insert(batch, pending):
                    await self._write_rejects()
                    return False
                await self._write_rejects()
                pending.rows_done += len(chunk)
                pending.settled.clear()
                self._depth -= len(chunk)
                continue
            if pending.path is None:
                return True
            try:
                lines, end = await asyncio.to_thread(
                    read_lines, pending.path, pending.offset, self._batch_size
                )
            except FileNotFoundError:
                return True
            except OSError:
                log.exception("cannot read the journal file %s", pending.path)
                return False
            if not lines:
                return True
            parsed = [(line, self._parse(line)) for line in lines]
            rows = [
                row
                for _, row in parsed
                if isinstance(row, dict) and row["id"] not in pending.settled
            ]
            if rows and not await self._insert(rows, pending):
                await self._write_rejects()
                return False
            for line, row in parsed:
                if isinstance(row, Exception):
                    self._reject({"line": line.decode("utf-8", "replace")}, row)
            await self._write_rejects()
            pending.offset = end
            pending.settled.clear()
            self._depth -= len(lines)

    def _parse(self, line: bytes) -> Row | Exception:
        """A journal line as a row to insert, or why it cannot be one."""
        try:
            data = orjson.loads(line)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return self._store.prepare(GenerationRecord.from_row(data).to_row())
        except Exception as error:
            return error

    async def _insert(self, rows: list[Row], pending: _Pending) -> bool:
        """Insert `rows`, isolating those the database refuses (bisection); False if the
        database could not be reached (nothing is lost: the caller retries). The ids written
        or quarantined are added to `pending.settled`, for the retry to skip."""
        try:
            await self._store.insert_many(rows, fitted=True)
        except Exception as error:
            if not self._store.refused(error):
                self._write_failures += 1
                if not self._failing:
                    log.error("cannot write generation records (%s); retrying", error)
                self._failing = True
                return False
            if len(rows) == 1:
                self._reject({"row": rows[0]}, error)
                pending.settled.add(rows[0]["id"])
                return True
            half = len(rows) // 2
            return await self._insert(rows[:half], pending) and await self._insert(
                rows[half:], pending
            )
        if self._failing:
            log.warning("generation records are written again")
            self._failing = False
        self._written += len(rows)
        pending.settled.update(row["id"] for row in rows)
        return True

    def _reject(self, entry: dict[str, Any], error: BaseException) -> None:
        """Keep what the database refused, with the reason, for the quarantine file
        (`_write_rejects` writes it)."""
        self._rejected += 1
        reason = f"{type(error).__name__}: {getattr(error, 'orig', None) or error}"[:2000]
        entry = {"rejected_at": datetime.now(UTC), "error": reason, **entry}
        try:
            line = orjson.dumps(entry, default=str) + b"\n"
        except TypeError:
            line = orjson.dumps({**entry, "row": repr(entry.get("row"))}, default=str) + b"\n"
        log.error("generation record refused by the database, quarantined: %s", reason)
        self._rejects.append(line)

    async def _write_rejects(self) -> None:
        """Append the quarantined lines to the quarantine file, synced: one write and one
        fsync per batch, in a thread (the event loop serves requests meanwhile)."""
        lines, self._rejects = self._rejects, []
        if not lines:
            return
        try:
            if self._quarantine is None:
                raise OSError("no quarantine file")
            await asyncio.to_thread(append_durably, self._quarantine, b"".join(lines))
        except OSError:
            log.exception(
                "cannot quarantine; the refused records: %s",
                b"".join(lines).decode("utf-8", "replace"),
            )

    async def close(self, retries: int = 3) -> None:
        """Write everything; what the database will not take now stays in the journal."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        for attempt in range(retries):
            if await self.flush():
                break
            await asyncio.sleep(0.2 * 2**attempt)
        else:
            self._journal_memory_rows()
            left = sum(1 for p in self._sealed if p.path is not None)
            log.error(
                "%d generation records could not be written; %d journal files at %s are "
                "written at the next start",
                self._depth,
                left,
                self._journal.directory if self._journal else None,
            )
        if self._journal is not None:
            self._journal.close()

    def _journal_memory_rows(self) -> None:
        """At shutdown, rows that only memory holds get one more chance at the journal."""
        for pending in [p for p in self._sealed if p.path is None and p.rows]:
            for row in (pending.rows or [])[pending.rows_done :]:
                if row["id"] in pending.settled:
                    continue  # written or quarantined already
                try:
                    if self._journal is None or not self._journal.is_open:
                        raise OSError("no journal")
                    self._journal.append(orjson.dumps(row, default=str) + b"\n")
                except Exception:
                    self._dropped += 1
                    log.error("generation record lost at shutdown: %s", row)
