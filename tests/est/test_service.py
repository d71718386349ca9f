"""The service around the library: loading, saving, stopping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from custom_components.est_pairing.est.service import EstService, ServiceConfig
from custom_components.est_pairing.est.storage import Document, JournalFile, JsonFileStore


class InstantStore:
    """A document store that saves without waiting (as an in-memory store would)."""

    def __init__(self) -> None:
        self.document: Document | None = None

    async def load(self) -> Document | None:
        return self.document

    async def save(self, document: Document) -> None:
        self.document = document


@pytest.mark.timeout(10)
async def test_flush_returns_when_a_save_has_just_finished(tmp_path: Path) -> None:
    store = InstantStore()
    service = EstService(
        ServiceConfig("Test", port=0, bind_host="127.0.0.1"),
        ca_store=JsonFileStore(tmp_path / "ca.json"),
        policy_store=store,
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    await service.load()
    service.policy.preregister("oven", "123456")  # schedules a save
    await asyncio.sleep(0)  # the save runs and finishes; its done-callbacks are queued, not yet run
    await service.flush()
    assert store.document is not None
    assert [r["appliance_id"] for r in store.document["registrations"]] == ["oven"]
