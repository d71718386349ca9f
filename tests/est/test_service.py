"""The running service: what it saves, and that waiting for its saves always ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from custom_components.est_pairing.est.service import EstService, ServiceConfig
from custom_components.est_pairing.est.storage import Document, JournalFile, JsonFileStore
from custom_components.est_pairing.est.tls import ListenerNames


class MemoryStore:
    """A document store whose save completes without ever suspending."""

    def __init__(self) -> None:
        self.saved: list[Document] = []

    async def load(self) -> Document | None:
        return None

    async def save(self, document: Document) -> None:
        self.saved.append(document)


@pytest.mark.timeout(10)  # the regression was a busy loop: only a signal interrupts it
async def test_flush_returns_when_saves_already_finished(tmp_path: Path) -> None:
    """A save that finished before its done-callbacks ran used to make flush() spin forever."""
    policy_store = MemoryStore()
    service = EstService(
        ServiceConfig("Test", port=0),
        ca_store=JsonFileStore(tmp_path / "ca.json"),
        policy_store=policy_store,
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    await service.load()
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # as Home Assistant runs many of its tasks
    try:
        service.policy.preregister("oven", "123456")  # schedules a save that finishes at once
        await service.flush()
    finally:
        loop.set_task_factory(None)
    assert [r["appliance_id"] for r in policy_store.saved[-1]["registrations"]] == ["oven"]


@pytest.mark.timeout(10)
async def test_flush_returns_when_a_save_has_just_finished(tmp_path: Path) -> None:
    """The same, with the default task factory: the save's done-callbacks are queued, not yet run."""
    policy_store = MemoryStore()
    service = EstService(
        ServiceConfig("Test", port=0, bind_host="127.0.0.1"),
        ca_store=JsonFileStore(tmp_path / "ca.json"),
        policy_store=policy_store,
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    await service.load()
    service.policy.preregister("oven", "123456")  # schedules a save
    await asyncio.sleep(0)  # the save runs and finishes
    await service.flush()
    assert [r["appliance_id"] for r in policy_store.saved[-1]["registrations"]] == ["oven"]


@pytest.mark.parametrize(
    ("bind_host", "crl_url"),
    [
        (None, "https://oven-hub.local:8443/crl"),  # the Home Assistant hub: every interface
        ("0.0.0.0", "https://oven-hub.local:8443/crl"),
        ("192.168.1.10", "https://192.168.1.10:8443/crl"),
        ("::1", "https://[::1]:8443/crl"),
    ],
)
def test_the_crl_is_named_where_the_listener_is_bound(
    tmp_path: Path, bind_host: str | None, crl_url: str
) -> None:
    names = ListenerNames.from_hosts(["oven-hub.local", "oven-hub", "192.168.1.10", "localhost", "127.0.0.1"])
    service = EstService(
        ServiceConfig("Test", port=8443, bind_host=bind_host, names=names),
        ca_store=MemoryStore(),
        policy_store=MemoryStore(),
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    assert service.crl_url == crl_url
