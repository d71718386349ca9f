"""Where state lives: the storage protocols the CA and ledger use, and their file-system backends.

Files are written atomically (temporary file, fsync, rename, fsync of the directory) and readable by
the owner only (0600): they hold the household CA key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
import contextlib
import errno
import itertools
import json
import os
from pathlib import Path
from typing import Any, Protocol

type Document = dict[str, Any]
type Event = dict[str, Any]

_PRIVATE = 0o600
_TAIL = 64 * 1024  # longer than any event; a torn final line is shorter
_PIECE = 256  # events per write when compacting: each write lets the event loop's thread run
# One encoder for every journal line: json.dumps with options would build a new one per event.
_EVENT_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


class DocumentStore(Protocol):
    """A JSON document saved and loaded as a whole (CA material, approvals)."""

    async def load(self) -> Document | None:
        """The saved document, or None if nothing was saved yet."""

    async def save(self, document: Document) -> None:
        """Replace the document durably."""


class JournalStore(Protocol):
    """An append-only event log with compaction (the certificate ledger)."""

    async def read(self) -> list[Event]:
        """Every event, oldest first."""

    async def append(self, events: Sequence[Event]) -> None:
        """Add events durably: when this returns they survive a crash."""

    async def compact(self, events: Sequence[Event]) -> None:
        """Replace the whole log with these events (same meaning, fewer lines).

        The events may be made as they are read (there can be 10^5): read them, in a worker thread
        if there are many, before returning.
        """


def write_private_atomically(path: Path, data: bytes | Iterable[bytes], *, mode: int = _PRIVATE) -> None:
    """Write a file (0600 unless told) so that a crash leaves either the old or the new content.

    ``data`` may come in pieces, each written as it comes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a crash, perhaps with other permissions
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for piece in [data] if isinstance(data, bytes) else data:
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class JsonFileStore:
    """A :class:`DocumentStore` in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def load(self) -> Document | None:
        """Read the file (in a thread: file I/O never runs on the event loop)."""
        return await asyncio.to_thread(self._load)

    def _load(self) -> Document | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        document = json.loads(text)
        if not isinstance(document, dict):
            raise TypeError(f"{self.path} does not hold a JSON object")
        return document

    async def save(self, document: Document) -> None:
        """Write the file atomically, 0600."""
        data = json.dumps(document, indent=1, sort_keys=True).encode()
        await asyncio.to_thread(write_private_atomically, self.path, data)


class JournalFile:
    """A :class:`JournalStore` in a JSON-lines file, fsynced on every append.

    A crash can tear only the last line, and only of an append that had not returned; such a line is
    ignored on reading and cut off before the next append. A damaged line anywhere else is corruption
    and raises.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self) -> list[Event]:
        """Every complete event in the file."""
        return await asyncio.to_thread(self.read_sync)

    def read_sync(self) -> list[Event]:
        """Blocking :meth:`read`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        events: list[Event] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                if number == len(lines):  # torn final append: its response never left
                    break
                raise ValueError(f"{self.path}:{number} is not a JSON event") from None
            events.append(event)
        return events

    async def append(self, events: Sequence[Event]) -> None:
        """Append and fsync."""
        await asyncio.to_thread(self.append_sync, events)

    def append_sync(self, events: Sequence[Event]) -> None:
        """Blocking :meth:`append`."""
        payload = b"".join(_line(event) for event in events)
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, _PRIVATE)
        try:
            size = self._drop_torn_line(descriptor)
            try:
                _write_all(descriptor, payload)
                os.fsync(descriptor)
            except OSError:
                # All or nothing: events nobody was told are durable must not stay (a full disk can
                # take part of a batch, ending on a line boundary that would look complete).
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, size)
                raise
        finally:
            os.close(descriptor)
        if created:
            _fsync_directory(self.path.parent)

    def _drop_torn_line(self, descriptor: int) -> int:
        """Cut off a torn final line; return the journal's size."""
        size = os.fstat(descriptor).st_size
        if not size or os.pread(descriptor, 1, size - 1) == b"\n":
            return size
        start = max(0, size - _TAIL)
        cut = os.pread(descriptor, size - start, start).rfind(b"\n")
        if cut < 0 and start:
            raise ValueError(f"{self.path} ends with a line longer than {_TAIL} bytes")
        os.ftruncate(descriptor, start + cut + 1)
        return start + cut + 1

    async def compact(self, events: Sequence[Event]) -> None:
        """Rewrite atomically."""
        await asyncio.to_thread(self.compact_sync, events)

    def compact_sync(self, events: Sequence[Event]) -> None:
        """Blocking :meth:`compact`."""
        write_private_atomically(self.path, _pieces(events))

    def truncate_sync(self) -> None:
        """Empty the journal (after its events were saved elsewhere)."""
        write_private_atomically(self.path, b"")


def _write_all(descriptor: int, data: bytes) -> None:
    """``os.write`` until every byte is written: it may write fewer than asked (a nearly full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        if written <= 0:
            raise OSError(errno.EIO, "the journal write made no progress")
        view = view[written:]


def _line(event: Event) -> bytes:
    return _EVENT_ENCODER.encode(event).encode() + b"\n"


def _pieces(events: Iterable[Event]) -> Iterator[bytes]:
    # A thread releases the GIL while it writes: the event loop waits for one piece, not the file.
    for piece in itertools.batched(events, _PIECE, strict=False):
        yield b"".join(map(_line, piece))
