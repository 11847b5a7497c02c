"""The generation journal: append-only files that hold every record until the database does.

Layout, under the data folder's `journal/`:

    journal/<pid>-<random>/lock            held (flock) by the process for its whole life
    journal/<pid>-<random>/00000001.jsonl  segments: one JSON line per record

Each process writes only into its own directory, so several processes may share one
data folder. A record is one `os.write` on an `O_APPEND` descriptor: the bytes are in the
operating system's cache when the call returns, so they survive the process being
killed; `fsync` (power loss) runs in the background writer's thread, per segment.

The writer seals the active segment (later appends open the next one), writes the
sealed segment's rows to the database, and deletes it. At start, `open()` adopts the
segments of every directory whose lock is free (its process is gone) and any legacy
files (the old shutdown spool), moving them into the new directory, oldest first.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("crossroads.journal")

_SEGMENT = "*.jsonl"
_LOCK = "lock"


@dataclass(frozen=True, slots=True)
class SealedSegment:
    """A segment's file, for the writer's thread to sync (and, once sealed, close)."""

    path: Path
    fd: int

    def sync(self) -> None:
        os.fsync(self.fd)
        _sync_directory(self.path.parent)

    def sync_and_close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
        _sync_directory(self.path.parent)


def _sync_directory(directory: Path) -> None:
    """Make new and renamed entries of `directory` durable too."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """An exclusive lock on `path` (created if missing), or None if another process holds it
    or the file's directory is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def read_lines(path: Path, offset: int, limit: int) -> tuple[list[bytes], int]:
    """Up to `limit` non-empty lines of `path` from byte `offset`, and the offset after them.
    A last line without its newline (a write cut by a crash) is returned as it is."""
    lines: list[bytes] = []
    with path.open("rb") as file:
        file.seek(offset)
        while len(lines) < limit:
            line = file.readline()
            if not line:
                break
            offset += len(line)
            if line.strip():
                lines.append(line.rstrip(b"\n"))
    return lines, offset


def append_durably(path: Path, line: bytes) -> None:
    """Append `line` (one or more whole lines) to `path` and fsync it (the quarantine file:
    rare, and kept). Blocking: call it from a thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())


def count_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for line in file if line.strip())


class Journal:
    """This process's journal directory and its active segment. Not thread-safe: appends and
    seals happen on the event loop; only a `SealedSegment`'s sync runs in a thread."""

    def __init__(self, root: Path, *, adopt: Sequence[Path] = ()) -> None:
        self.root = root
        self._legacy = tuple(adopt)
        self._dir: Path | None = None
        self._lock: int | None = None
        self._fd: int | None = None  # the active segment
        self._path: Path | None = None
        self._seq = 0
        self._lines = 0  # appended to the active segment
        self._dirty = False  # appended since the last fsync

    @property
    def is_open(self) -> bool:
        return self._dir is not None

    @property
    def directory(self) -> Path | None:
        return self._dir

    @property
    def active_lines(self) -> int:
        return self._lines

    def open(self) -> list[Path]:
        """Claim a directory of our own, then adopt what was left behind: the segments to
        replay, oldest first, now inside our directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._claim()
        adopted = self._adopt(path for path in self._legacy if path.exists())
        for other in sorted(self.root.iterdir()):
            if other == self._dir or other.name.startswith(".") or not other.is_dir():
                continue
            lock = _try_lock(other / _LOCK)
            if lock is None:
                continue  # a live process owns it (or another one is adopting it)
            try:
                adopted += self._adopt(sorted(other.glob(_SEGMENT)))
                (other / _LOCK).unlink(missing_ok=True)
                other.rmdir()
            except OSError as error:
                log.warning("could not clean up the journal directory %s: %s", other, error)
            finally:
                os.close(lock)
        if adopted:
            _sync_directory(self._own())
        return adopted

    def _adopt(self, paths: Iterable[Path]) -> list[Path]:
        """`paths` moved into our directory; one that cannot be moved is left where it is
        (logged), for a later start."""
        taken = []
        for path in paths:
            target = self._next_path()
            try:
                os.replace(path, target)
            except OSError as error:
                log.error("cannot adopt the journal file %s: %s", path, error)
                continue
            taken.append(target)
        return taken

    def _claim(self) -> None:
        """Create our directory under a hidden name, lock it, then give it its real name, so
        nobody sees it unlocked."""
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        hidden = self.root / f".new-{name}"
        hidden.mkdir()
        lock = _try_lock(hidden / _LOCK)
        if lock is None:
            raise OSError(f"cannot lock {hidden / _LOCK}")
        final = self.root / name
        hidden.rename(final)
        self._dir, self._lock = final, lock

    def _own(self) -> Path:
        if self._dir is None:
            raise OSError("the journal is not open")
        return self._dir

    def _next_path(self) -> Path:
        self._seq += 1
        return self._own() / f"{self._seq:08d}.jsonl"

    def append(self, line: bytes) -> None:
        """One record, newline included; raises OSError (e.g. disk full)."""
        if self._fd is None:
            path = self._next_path()
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            self._fd, self._path = os.open(path, flags, 0o600), path
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            if len(view) < len(line):  # end the cut line, so the next record starts clean
                try:
                    os.write(self._fd, b"\n")
                except OSError:
                    pass
            raise
        self._lines += 1
        self._dirty = True

    def seal(self) -> SealedSegment | None:
        """End the active segment (None if nothing was appended since the last seal); the
        caller syncs and closes it, off the event loop."""
        if self._fd is None or self._path is None:
            return None
        sealed = SealedSegment(self._path, self._fd)
        self._fd, self._path, self._lines, self._dirty = None, None, 0, False
        return sealed

    def active_to_sync(self) -> SealedSegment | None:
        """The active segment if it has unsynced appends (then marked synced), for a thread to
        `sync()` while appends go on; only the caller may seal it meanwhile."""
        if self._fd is None or self._path is None or not self._dirty:
            return None
        self._dirty = False
        return SealedSegment(self._path, self._fd)

    def close(self) -> None:
        """Close the active segment and release the directory; an empty directory is
        removed, one with segments left stays for the next start to adopt."""
        sealed = self.seal()
        if sealed is not None:
            sealed.sync_and_close()
        if self._dir is None or self._lock is None:
            return
        try:
            if not any(self._dir.glob(_SEGMENT)):
                (self._dir / _LOCK).unlink(missing_ok=True)
                self._dir.rmdir()
        except OSError as error:
            log.warning("could not remove the journal directory %s: %s", self._dir, error)
        finally:
            os.close(self._lock)
            self._dir, self._lock = None, None
