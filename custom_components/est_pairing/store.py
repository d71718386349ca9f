"""Home Assistant storage for the household CA, approvals and ledger (all in .storage, 0600).

The CA and approvals are JSON documents in ``Store(private=True, atomic_writes=True)``. The ledger is
a snapshot in such a Store plus an fsynced journal file beside it, so recording a certificate does not
rewrite every certificate before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import contextlib
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

    async def load(self) -> Document | None:
        """The saved document, or None."""
        return await self._store.async_load()

    async def save(self, document: Document) -> None:
        """Replace the document (atomic, 0600)."""
        await self._store.async_save(document)

    async def remove(self) -> None:
        """Delete the file."""
        await self._store.async_remove()


class LedgerJournal:
    """A library :class:`~.est.storage.JournalStore`: Store snapshot + fsynced journal file."""

    def __init__(self, hass: HomeAssistant, entry_id: str) -> None:
        self._snapshot = Store[list[Event]](
            hass, STORAGE_VERSION, _store_key(entry_id, "ledger"), private=True, atomic_writes=True
        )
        self._journal = JournalFile(Path(hass.config.path(".storage", f"{DOMAIN}.{entry_id}.ledger_journal")))

    async def read(self) -> list[Event]:
        """Snapshot events, then the journal's."""
        snapshot = await self._snapshot.async_load() or []
        return [*snapshot, *await self._journal.read()]

    async def append(self, events: Sequence[Event]) -> None:
        """Durable append to the journal."""
        await self._journal.append(events)

    async def compact(self, events: Sequence[Event]) -> None:
        """Save everything as the snapshot, then empty the journal."""
        await self._snapshot.async_save(list(events))
        await asyncio.to_thread(self._journal.truncate_sync)

    async def remove(self) -> None:
        """Delete both files."""
        await self._snapshot.async_remove()
        await asyncio.to_thread(_unlink, self._journal.path)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
