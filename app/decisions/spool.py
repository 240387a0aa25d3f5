"""A local append-only spool: where exposures and outcomes go while the database is away.

Format: one record per line, `<crc32 of the JSON, 8 hex digits> <JSON>\\n`. orjson never writes
a raw newline inside a document, so a line is a record. A line that does not end in a newline
or whose checksum does not match (a torn write: the process died mid-append) is skipped when
the file is read; it was never acknowledged, since an append returns only after
write + `os.fsync`.

Files: each process appends to its own file, `<prefix>-<ns since epoch>-<random>.spool` in the
spool directory, created new (O_EXCL: never appended to after a crash) and held under an
exclusive `flock` for the life of the process. A file nobody holds a lock on belongs to a dead
process: any live process may claim it (LOCK_NB) and replay it. Appends are group-committed:
concurrent appends share one write and one fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("croupier.spool")

SUFFIX = ".spool"


def encode(record: dict[str, Any]) -> bytes:
    payload = orjson.dumps(record)
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def decode(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The records of a spool file's content, and how many lines were skipped (torn or
    corrupt). Only complete lines (ending in a newline) with a matching checksum count."""
    records: list[dict[str, Any]] = []
    bad = 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file ends with a newline: no partial tail
    elif lines:
        lines.pop()  # a torn last line (no newline): never acknowledged
        bad += 1
    for line in lines:
        crc, _, payload = line.partition(b" ")
        try:
            ok = len(crc) == 8 and int(crc, 16) == zlib.crc32(payload)
            record = orjson.loads(payload) if ok else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            bad += 1
            continue
        records.append(record)
    return records, bad


@dataclass
class SpoolFile:
    """An open spool file this process holds the lock on."""

    path: Path
    fd: int
    records: int = 0
    size: int = 0
    broken: bool = False  # a write failed: it may end in a partial line, so append no more

    def read(self) -> tuple[list[dict[str, Any]], int]:
        chunks: list[bytes] = []
        offset = 0
        while chunk := os.pread(self.fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return decode(b"".join(chunks))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


@dataclass
class _Append:
    data: bytes
    records: int
    done: bool = False
    error: OSError | None = field(default=None, repr=False)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Spool:
    def __init__(self, directory: Path, *, prefix: str) -> None:
        self.directory = directory
        self._prefix = prefix
        self._active: SpoolFile | None = None
        self._cond = threading.Condition()
        self._pending: list[_Append] = []
        self._writing = False

    # -- this process's file ---------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._cond:
            self._active = self._create()

    def _create(self) -> SpoolFile:
        name = f"{self._prefix}-{time.time_ns()}-{secrets.token_hex(4)}{SUFFIX}"
        path = self.directory / name
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _fsync_dir(self.directory)  # the file's name survives a crash too
        except OSError:
            os.close(fd)
            raise
        return SpoolFile(path, fd)

    @property
    def records(self) -> int:
        """Records appended to this process's current file (not yet rotated for replay)."""
        active = self._active
        return active.records if active is not None else 0

    @property
    def active_path(self) -> Path | None:
        active = self._active
        return active.path if active is not None else None

    @property
    def size(self) -> int:
        active = self._active
        return active.size if active is not None else 0

    def append(
        self, records: Iterable[dict[str, Any]], *, check: Callable[[], bool] | None = None
    ) -> bool:
        """Append records durably (written and fsynced) before returning. `check` runs under
        the spool's lock first: when it returns False nothing is appended and this returns
        False (the caller's reason to spool has gone). Concurrent appends share one fsync."""
        data = b"".join(encode(record) for record in records)
        entry = _Append(data, data.count(b"\n"))
        with self._cond:
            if check is not None and not check():
                return False
            self._pending.append(entry)
            while not entry.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._flush_pending()
        if entry.error is not None:
            raise entry.error
        return True

    def _flush_pending(self) -> None:
        """Called with the lock held; writes outside it (others queue meanwhile)."""
        batch, self._pending = self._pending, []
        self._writing = True
        error: OSError | None = None
        target = self._active
        self._cond.release()
        try:
            try:
                if target is None or target.broken:
                    target = self._create()
                _write_all(target.fd, b"".join(entry.data for entry in batch))
                os.fsync(target.fd)
            except OSError as exc:
                error = exc
                if target is not None:
                    target.broken = True
        finally:
            self._cond.acquire()
            self._writing = False
        if target is not None and target is not self._active:  # replaced a broken file
            if error is None:
                self._retire(self._active)
                self._active = target
            else:
                target.close()
        if error is None and target is not None:
            target.records += sum(entry.records for entry in batch)
            target.size += sum(len(entry.data) for entry in batch)
        for entry in batch:
            entry.done = True
            entry.error = error
        self._cond.notify_all()

    def _retire(self, old: SpoolFile | None) -> None:
        """A broken file stays for replay (by us, once unlocked as an orphan)."""
        if old is not None:
            old.close()  # releases the lock: the replay loop claims it as an orphan

    def rotate(self) -> SpoolFile | None:
        """Start a new file for appends and hand back the previous one (still locked) for
        replay; None when it holds no records."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            old = self._active
            if old is None or old.records == 0:
                return None
            self._active = self._create()
            return old

    def locked(self) -> threading.Condition:
        """Hold it to keep appends out (they wait) while switching modes."""
        return self._cond

    def drain(self) -> None:
        """With the lock held: until every append already admitted (its `check` passed) is
        on disk, including ones queued behind a write that just finished."""
        while self._writing or self._pending:
            if self._writing:
                self._cond.wait()
            else:
                self._flush_pending()

    def close(self) -> None:
        """At shutdown: an empty file is removed, one with records stays for replay."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            active, self._active = self._active, None
        if active is None:
            return
        if active.records == 0 and not active.broken:
            with contextlib.suppress(OSError):
                active.path.unlink()
        active.close()

    # -- replay ----------------------------------------------------------------------------

    def claim_orphans(self) -> list[SpoolFile]:
        """Spool files of dead processes (nobody holds their lock), locked for us now."""
        claimed: list[SpoolFile] = []
        try:
            paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        except OSError:
            return claimed
        own = self._active.path if self._active is not None else None
        for path in paths:
            if path == own:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # replayed and removed meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # Still the file at that name? Another process may have replayed and
                # unlinked it between our open and our lock.
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    raise FileNotFoundError(path)
            except OSError:
                os.close(fd)
                continue
            claimed.append(SpoolFile(path, fd, size=os.fstat(fd).st_size))
        return claimed

    def discard(self, replayed: SpoolFile) -> None:
        """Everything in it is in the database: remove it (durably), then let go of it."""
        with contextlib.suppress(FileNotFoundError):
            replayed.path.unlink()
        with contextlib.suppress(OSError):
            _fsync_dir(self.directory)
        replayed.close()
