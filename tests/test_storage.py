"""What survives in .storage when a write fails or Home Assistant is stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers.storage import Store
from homeassistant.util.file import WriteError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.est_pairing.const import DOMAIN
from custom_components.est_pairing.est.client import EstClient
from custom_components.est_pairing.est.storage import Event
from custom_components.est_pairing.runtime import EstRuntime
from custom_components.est_pairing.store import LedgerJournal

from .est.polling import eventually
from .test_pairing import entity_state, paired_oven


async def reloaded(hass: HomeAssistant, entry: MockConfigEntry) -> EstRuntime:
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = entry.runtime_data
    return runtime


async def test_a_ledger_compaction_whose_snapshot_cannot_be_written_loses_nothing(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """A nearly full disk takes the journal's small appends but not a rewrite of every record."""
    write = Store._async_write_data  # the test harness's in-memory storage

    async def full_disk(store: Store[Any], *args: Any) -> None:
        if store.key.endswith(".ledger"):
            raise WriteError("No space left on device")
        await write(store, *args)

    with (
        patch("custom_components.est_pairing.est.ledger._COMPACT_MIN", 1),  # compact at once
        patch.object(Store, "_async_write_data", full_disk),
    ):
        certificate, _ = await paired_oven(hass, runtime, appliance_client)
    restarted = await reloaded(hass, init_integration)
    assert restarted.service.ledger.get(certificate.serial_number) is not None
    assert entity_state(hass, "_oven_certificate_status") == "valid"


async def test_a_ledger_compaction_while_home_assistant_stops_is_on_disk_at_once(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """A Store saved while stopping is written at the final write; the journal was emptied before."""
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    hass.set_state(CoreState.stopping)
    with patch("custom_components.est_pairing.est.ledger._COMPACT_MIN", 1):
        await runtime.async_revoke("oven")  # compacts
    await hass.async_block_till_done()
    hass.set_state(CoreState.running)  # killed before the final write; started again
    restarted = await reloaded(hass, init_integration)
    record = restarted.service.ledger.get(certificate.serial_number)
    assert record is not None
    assert record.revoked


async def test_an_earlier_versions_ledger_snapshot_is_read_and_folded_into_the_journal(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_storage: dict[str, Any],
    config_dir: Path,
) -> None:
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    prefix = f"{DOMAIN}.{init_integration.entry_id}"
    journal = config_dir / ".storage" / f"{prefix}.ledger_journal"
    events = [json.loads(line) for line in journal.read_text().splitlines()]
    hass_storage[f"{prefix}.ledger"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{prefix}.ledger",
        "data": events,
    }
    journal.write_text("")  # as an earlier version left it after compacting
    assert await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()
    restarted: EstRuntime = init_integration.runtime_data
    assert restarted.service.ledger.get(certificate.serial_number) is not None

    with patch("custom_components.est_pairing.est.ledger._COMPACT_MIN", 1):
        await restarted.async_revoke("oven")  # compacts
        await eventually(lambda: f"{prefix}.ledger" not in hass_storage, "the old snapshot is removed")
    record = (await reloaded(hass, init_integration)).service.ledger.get(certificate.serial_number)
    assert record is not None
    assert record.revoked


async def test_unloading_waits_for_the_ledgers_last_write(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """A reload must not load the ledger while the old hub still rewrites it (a compaction is slow)."""
    gate, compacting = asyncio.Event(), asyncio.Event()
    original = LedgerJournal.compact

    async def slow_compact(self: LedgerJournal, events: Sequence[Event]) -> None:
        compacting.set()
        await gate.wait()
        await original(self, events)

    with (
        patch("custom_components.est_pairing.est.ledger._COMPACT_MIN", 1),
        patch.object(LedgerJournal, "compact", slow_compact),
    ):
        certificate, _ = await paired_oven(hass, runtime, appliance_client)  # compacts after recording
        await asyncio.wait_for(compacting.wait(), 10)
        unloading = hass.async_create_task(hass.config_entries.async_unload(init_integration.entry_id))
        await asyncio.sleep(0.2)
        assert not unloading.done()  # still writing: the next start would read a journal being replaced
        gate.set()
        assert await asyncio.wait_for(unloading, 10)
    assert await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()
    restarted: EstRuntime = init_integration.runtime_data
    assert restarted.service.ledger.get(certificate.serial_number) is not None
