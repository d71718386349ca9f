"""Home Assistant storage for the household CA, approvals and ledger (all in .storage, 0600).

The CA and approvals are JSON documents in ``Store(private=True, atomic_writes=True)``. A Store logs
a failed write instead of raising, so each save reads the document back and raises OSError if what
is there is not what was saved (the write is atomic: a failed one leaves the older document). The
library then does what it does with a file that cannot be written: a CA that cannot be saved is not
used, approvals that cannot be saved are reported and written again with the next save.

The ledger is an fsynced journal file beside them, so recording a certificate does not rewrite every
certificate before it; compaction rewrites it atomically.

The ledger is never compacted into a Store: a Store logs a failed write instead of raising, and while
Home Assistant stops it only writes at the final write, so the journal would be emptied of records that
were not saved anywhere else (a nearly full disk takes small appends but not a rewrite of everything).
Earlier versions did; their snapshot is still read, and removed once the journal holds everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import contextlib
import json
from pathlib import Path

from homeassistant.core import HomeAssistant
from homeassistant.helpers.storage import Store

from .const import DOMAIN
from .est.storage import Document, Event, JournalFile

STORAGE_VERSION = 1


def _store_key(entry_id: str, name: str) -> str:
    return f"{DOMAIN}.{entry_id}.{name}"


class DocumentStore:
    """A library :class:`~.est.storage.DocumentStore` backed by a Home Assistant Store."""

    def __init__(self, hass: HomeAssistant, entry_id: str, name: str) -> None:
        self._store = Store[Document](
            hass, STORAGE_VERSION, _store_key(entry_id, name), private=True, atomic_writes=True
        )
        # One save and its check at a time: a save begun meanwhile would be read back as pending.
        self._saving = asyncio.Lock()

    async def load(self) -> Document | None:
        """The saved document, or None."""
        return await self._store.async_load()

    async def save(self, document: Document) -> None:
        """Replace the document (atomic, 0600); raises OSError if it was not written.

        While Home Assistant stops, the Store keeps the document for its final write and reads it
        back from memory: that one is not checked.
        """
        async with self._saving:
            await self._store.async_save(document)
            if await self._store.async_load() != json.loads(json.dumps(document)):
                raise OSError(f"Home Assistant could not write .storage/{self._store.key} (its log says why)")

    async def remove(self) -> None:
        """Delete the file."""
        await self._store.async_remove()


class LedgerJournal:
    """A library :class:`~.est.storage.JournalStore`: an fsynced journal file (and an old snapshot)."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        self._snapshot = Store[list[Event]](
            hass, STORAGE_VERSION, _store_key(entry_id, "ledger"), private=True, atomic_writes=True
        )
        self._journal = JournalFile(Path(hass.config.path(".storage", f"{DOMAIN}.{entry_id}.ledger_journal")))

    async def read(self) -> list[Event]:
        """An earlier version's snapshot events, if any, then the journal's."""
        snapshot = await self._snapshot.async_load() or []
        return [*snapshot, *await self._journal.read()]

    async def append(self, events: Sequence[Event]) -> None:
        """Durable append to the journal."""
        await self._journal.append(events)

    async def compact(self, events: Sequence[Event]) -> None:
        """Rewrite the journal with everything (atomic; raises if it cannot), then drop an old snapshot.

        A crash between the two leaves records in both, which the ledger reads once.
        """
        await self._journal.compact(events)
        await self._snapshot.async_remove()

    async def remove(self) -> None:
        """Delete both files."""
        await self._snapshot.async_remove()
        await asyncio.to_thread(_unlink, self._journal.path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
