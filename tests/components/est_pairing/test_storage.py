"""What survives in .storage when a write fails or Home Assistant is stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
import errno
from functools import partial
import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from homeassistant.components.repairs import DOMAIN as REPAIRS_DOMAIN
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import CoreState, HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.storage import Store
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from homeassistant.util.file import WriteError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.est_pairing.const import (
    DOMAIN,
    ISSUE_CA_MISSING,
    ISSUE_LISTENER_NAMES,
    ISSUE_STORAGE_UNWRITABLE,
    UPKEEP_INTERVAL,
)
from custom_components.est_pairing.diagnostics import async_get_config_entry_diagnostics
from custom_components.est_pairing.est.storage import Event, JournalFile
from custom_components.est_pairing.exceptions import NotSaved
from custom_components.est_pairing.runtime import EstRuntime
from custom_components.est_pairing.store import DocumentStore, LedgerJournal
from est_tools.appliance.client import EstClient
from tests.est.polling import eventually

from . import assert_renewal_refused, entity_state, paired_oven


@contextmanager
def full_disk_for(*names: str) -> Iterator[None]:
    """Writes of this hub's stores with these names fail as on a full disk (the Store logs and goes on)."""
    write = Store._async_write_data  # the test harness's in-memory storage

    async def full_disk(store: Store[Any], *args: Any) -> None:
        if store.key.rsplit(".", 1)[-1] in names:
            raise WriteError("No space left on device")
        await write(store, *args)

    with patch.object(Store, "_async_write_data", full_disk):
        yield


@contextmanager
def full_disk_for_the_ledger() -> Iterator[None]:
    """Appends to the ledger's journal fail as on a full disk."""

    def full_disk(_journal: JournalFile, _events: Sequence[Event]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with patch.object(JournalFile, "append_sync", full_disk):
        yield


async def reloaded(hass: HomeAssistant, entry: MockConfigEntry) -> EstRuntime:
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = entry.runtime_data
    return runtime


async def test_a_ledger_compaction_whose_snapshot_cannot_be_written_loses_nothing(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """A nearly full disk takes the journal's small appends but not a rewrite of every record."""
    with (
        patch("custom_components.est_pairing.est.ledger._COMPACT_MIN", 1),  # compact at once
        full_disk_for("ledger"),
    ):
        certificate, _ = await paired_oven(hass, runtime, appliance_client)
    restarted = await reloaded(hass, init_integration)
    assert restarted.service.ledger.get(certificate.serial_number) is not None
    assert entity_state(hass, "_oven_certificate_status") == "valid"


async def test_a_household_ca_home_assistant_cannot_save_is_not_used(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """Certificates issued under a CA that is gone at the next start would be worthless."""
    mock_config_entry.add_to_hass(hass)
    with full_disk_for("ca"):
        assert not await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert "could not read or write its storage" in (mock_config_entry.reason or "")
    prefix = f"{DOMAIN}.{mock_config_entry.entry_id}"
    assert f"{prefix}.ca" not in hass_storage
    runtime = await reloaded(hass, mock_config_entry)  # the disk has room again when it retries
    saved = x509.load_pem_x509_certificate(hass_storage[f"{prefix}.ca"]["data"]["ca"]["certificate"].encode())
    assert saved == runtime.service.ca.certificate


async def test_a_household_ca_gone_from_storage_is_not_replaced_until_restored(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_storage: dict[str, Any],
) -> None:
    """Home Assistant sets a damaged file aside and loads nothing: a new CA would cut off the oven."""
    await paired_oven(hass, runtime, appliance_client)
    fingerprint = runtime.service.ca.fingerprint
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    ca_key = f"{DOMAIN}.{init_integration.entry_id}.ca"
    set_aside = hass_storage.pop(ca_key)
    assert not await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.SETUP_ERROR  # no retries: the owner must act
    assert "household CA is missing" in (init_integration.reason or "")
    assert ca_key not in hass_storage  # nothing created in its place
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_CA_MISSING)
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.CRITICAL
    hass_storage[ca_key] = set_aside  # restored from a backup
    restored = await reloaded(hass, init_integration)  # set up again
    assert restored.service.ca.fingerprint == fingerprint
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_CA_MISSING) is None


async def test_approvals_home_assistant_cannot_save_raise_a_repair_issue_until_saved(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, hass_storage: dict[str, Any]
) -> None:
    approvals = f"{DOMAIN}.{init_integration.entry_id}.approvals"
    with full_disk_for("approvals"):
        await runtime.decisions.async_preregister("oven", "482913", "Kitchen oven")
        await hass.async_block_till_done()
        issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_STORAGE_UNWRITABLE)
        assert issue is not None
        assert issue.severity is ir.IssueSeverity.ERROR
        assert "oven" not in str(hass_storage.get(approvals))
        diagnostics = await async_get_config_entry_diagnostics(hass, init_integration)
        assert diagnostics["approvals"]["saved"] is False
        assert "could not write" in diagnostics["approvals"]["save_error"]
        async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)  # tries again, still full
        await hass.async_block_till_done(wait_background_tasks=True)
        assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_STORAGE_UNWRITABLE) is not None
    async_fire_time_changed(hass, dt_util.utcnow() + 2 * UPKEEP_INTERVAL)  # the owner freed some space
    await hass.async_block_till_done(wait_background_tasks=True)
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_STORAGE_UNWRITABLE) is None
    assert (await async_get_config_entry_diagnostics(hass, init_integration))["approvals"]["saved"] is True
    restarted = await reloaded(hass, init_integration)
    assert restarted.service.policy.registration("oven") is not None


async def test_a_revocation_has_dropped_the_pin_on_disk_when_it_returns(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_storage: dict[str, Any],
) -> None:
    """Killed right after the owner revoked it, the hub must not start again with the PIN still valid."""
    await paired_oven(hass, runtime, appliance_client)
    await hass.async_block_till_done()
    approvals = f"{DOMAIN}.{init_integration.entry_id}.approvals"
    assert "oven" in str(hass_storage[approvals]["data"])
    await runtime.decisions.async_revoke("oven")  # nothing else runs before the check below
    assert "oven" not in str(hass_storage[approvals]["data"]["registrations"])


async def test_a_revocation_whose_approvals_cannot_be_saved_says_so_and_is_saved_at_unload(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await paired_oven(hass, runtime, appliance_client)
    await hass.async_block_till_done()
    with full_disk_for("approvals"), pytest.raises(NotSaved):
        await runtime.decisions.async_revoke("oven")
    assert entity_state(hass, "_oven_certificate_status") == "revoked"  # in effect all the same
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_STORAGE_UNWRITABLE) is not None
    restarted = await reloaded(hass, init_integration)  # the disk has room again: saved on the way out
    assert restarted.service.policy.registration("oven") is None
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_STORAGE_UNWRITABLE) is None


async def test_two_saves_of_one_store_at_once_are_both_checked_against_their_own_document(
    hass: HomeAssistant, config_dir: Path
) -> None:
    """The second save's document is pending while the first is read back: that is no failure."""
    write = Store._async_write_data

    async def slow_disk(store: Store[Any], *args: Any) -> None:
        await asyncio.sleep(0.01)  # as a write in the executor lets other saves begin meanwhile
        await write(store, *args)

    store = DocumentStore(hass, "entry", "ca")
    with patch.object(Store, "_async_write_data", slow_disk):
        await asyncio.gather(store.save({"n": 1}), store.save({"n": 2}))
    assert await store.load() == {"n": 2}


async def test_a_hub_whose_re_issued_listener_certificate_cannot_be_saved_starts(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """The CA is saved: any certificate it issues serves appliances, and the next start issues another."""
    with (
        patch("homeassistant.components.network.async_get_announce_addresses", return_value=["192.168.7.7"]),
        full_disk_for("ca"),
    ):
        runtime = await reloaded(hass, init_integration)
    assert init_integration.state is ConfigEntryState.LOADED
    assert "192.168.7.7" in runtime.service.listener_identity.names().all()


async def test_a_listener_certificate_home_assistant_cannot_save_is_not_used(
    hass: HomeAssistant, runtime: EstRuntime, hass_client: ClientSessionGenerator
) -> None:
    """The repair's fix says so, and the listener keeps the certificate that a restart would load."""
    assert await async_setup_component(hass, REPAIRS_DOMAIN, {})
    before = runtime.service.listener_identity
    client = await hass_client()
    with (
        patch("homeassistant.components.network.async_get_announce_addresses", return_value=["192.168.7.7"]),
        full_disk_for("ca"),
    ):
        async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)
        await hass.async_block_till_done(wait_background_tasks=True)
        response = await client.post(
            "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": ISSUE_LISTENER_NAMES}
        )
        flow = await response.json()
        response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
        result = await response.json()
    assert (result["type"], result["reason"]) == ("abort", "not_saved")
    assert runtime.service.listener_identity is before
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is not None


async def test_a_ledger_compaction_while_home_assistant_stops_is_on_disk_at_once(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """A Store saved while stopping is written at the final write; the journal was emptied before."""
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    hass.set_state(CoreState.stopping)
    with patch("custom_components.est_pairing.est.ledger._COMPACT_MIN", 1):
        await runtime.decisions.async_revoke("oven")  # compacts
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
        await restarted.decisions.async_revoke("oven")  # compacts
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


async def assert_removed_and_revoked(
    entry: MockConfigEntry, certificate: x509.Certificate, oven_key: ec.EllipticCurvePrivateKey
) -> None:
    """The appliance stays deleted, and its certificate cannot renew."""
    assert entry.state is ConfigEntryState.LOADED
    assert entry.subentries == {}
    runtime: EstRuntime = entry.runtime_data
    assert runtime.service.policy.registration("oven") is None
    await assert_renewal_refused(runtime, certificate, oven_key)


@pytest.mark.parametrize(
    "full_disk", [full_disk_for_the_ledger, partial(full_disk_for, "approvals")], ids=["ledger", "approvals"]
)
async def test_an_appliance_deleted_while_its_revocation_cannot_be_saved_stays_deleted(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    full_disk: Callable[[], AbstractContextManager[None]],
) -> None:
    """Not revoked (the ledger), or its approval still on disk (the approvals), when the hub stops:
    the next start revokes it, and does not add it back."""
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    (subentry_id,) = init_integration.subentries
    with full_disk():
        hass.config_entries.async_remove_subentry(init_integration, subentry_id)
        await hass.async_block_till_done()
        assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert await hass.config_entries.async_setup(init_integration.entry_id)  # the disk has room again
    await hass.async_block_till_done()
    await assert_removed_and_revoked(init_integration, certificate, oven_key)


async def test_a_hub_that_cannot_write_the_revocation_of_an_appliance_deleted_meanwhile_retries(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    (subentry_id,) = init_integration.subentries
    hass.config_entries.async_remove_subentry(init_integration, subentry_id)
    await hass.async_block_till_done()
    with full_disk_for_the_ledger():
        await hass.config_entries.async_setup(init_integration.entry_id)
        await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.SETUP_RETRY
    assert "could not read or write its storage" in str(init_integration.reason)
    await reloaded(hass, init_integration)  # the disk has room again
    await assert_removed_and_revoked(init_integration, certificate, oven_key)
