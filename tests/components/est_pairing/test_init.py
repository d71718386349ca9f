"""Setting up, unloading and reloading the hub with its real listener and (mocked) mDNS."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
import socket
from typing import Any
from unittest.mock import MagicMock, patch

from cryptography.hazmat.primitives.asymmetric import ec
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_IGNORE, ConfigEntry, ConfigEntryDisabler, ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.est_pairing.const import (
    CONF_CA_NAME,
    CONF_PORT,
    DOMAIN,
    ISSUE_CA_EXPIRING,
    ISSUE_LISTENER_NAMES,
    ISSUE_PORT_UNAVAILABLE,
)
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, build_csr
from tests.pkix_lint import problems

from . import ANNOUNCE_ADDRESSES, device_for


def state_of(entry: ConfigEntry) -> ConfigEntryState:
    """The entry's state now (read through a call, so that an earlier assert does not pin its type)."""
    return entry.state


async def test_setup_announces_and_unload_withdraws(
    hass: HomeAssistant, init_integration: MockConfigEntry, zeroconf: MagicMock
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    assert init_integration.state is ConfigEntryState.LOADED
    bootstrap = await EstClient.fetch_ca(f"https://127.0.0.1:{runtime.service.port}")
    assert bootstrap.fingerprint == runtime.service.ca.fingerprint

    zeroconf.async_register_service.assert_awaited_once()
    info = zeroconf.async_register_service.await_args.args[0]
    assert info.type == "_est._tcp.local."
    assert info.name == "Home Household CA._est._tcp.local."
    assert info.port == runtime.service.port
    assert info.server == "ha-test.local."
    assert info.parsed_addresses() == ANNOUNCE_ADDRESSES
    assert info.properties == {
        b"path": b"/.well-known/est",
        b"cafp": runtime.service.ca.fingerprint.encode(),
        b"ver": b"1",
        b"pake": b"srp6a-sha512-3072",  # the PIN exchange: an appliance with a PIN never sends it otherwise
    }
    assert all(len(value or b"") < 255 for value in info.properties.values())
    assert zeroconf.async_register_service.await_args.kwargs == {"allow_name_change": True}

    # Home-network names only (no "localhost" or bare "ha-test"), clean by pkilint's RFC 5280 linter.
    identity = runtime.service.listener_identity
    assert identity.names().all() == ["ha-test.local", "192.168.1.2", "127.0.0.1"]
    assert problems(identity.certificate) == []

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert state_of(init_integration) is ConfigEntryState.NOT_LOADED
    zeroconf.async_unregister_service.assert_awaited_once_with(info)


async def test_a_public_address_is_neither_certified_nor_announced(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, zeroconf: MagicMock
) -> None:
    """The household CA's name constraint covers the home network's addresses, not a public IPv6."""
    addresses = ["2001:db8::7", "192.168.1.2", "fd00::2", "203.0.113.5"]
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=addresses):
        mock_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
        runtime: EstRuntime = mock_config_entry.runtime_data
        assert runtime.service.listener_identity.names().all() == [
            "ha-test.local",
            "192.168.1.2",
            "fd00::2",
            "127.0.0.1",
        ]
        info = zeroconf.async_register_service.await_args.args[0]
        assert info.parsed_addresses() == ["192.168.1.2", "fd00::2"]
        assert runtime.coordinator.data.qr_payload.startswith("est://192.168.1.2:")
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(hours=2))  # the hourly check
        await hass.async_block_till_done(wait_background_tasks=True)
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is None  # nothing missing


async def test_only_public_addresses_are_announced_when_no_other_is_known(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, zeroconf: MagicMock
) -> None:
    """Appliances then reach it by <host>.local, which the certificate covers."""
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=["2001:db8::7"]):
        mock_config_entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    runtime: EstRuntime = mock_config_entry.runtime_data
    assert runtime.service.listener_identity.names().all() == ["ha-test.local", "127.0.0.1"]
    assert zeroconf.async_register_service.await_args.args[0].parsed_addresses() == ["2001:db8::7"]
    assert runtime.coordinator.data.qr_payload.startswith("est://ha-test.local:")


async def test_a_hub_named_too_long_by_an_earlier_version_sets_up(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """Earlier versions accepted any name; the CA and the hub device take it shortened to fit a CN."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=DOMAIN,
        data={
            **mock_config_entry.data,
            CONF_CA_NAME: "Familie Mueller-Luedenscheidt, Ferienhaus am Seeufer 12",
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = entry.runtime_data
    name = "Familie Mueller-Luedenscheidt, Ferienhaus am Seeufe Household CA"  # 64 bytes
    assert runtime.service.ca.certificate.subject.rfc4514_string() == f"CN={name.replace(',', '\\,')}"
    hub = device_for(hass, entry.entry_id)
    assert hub is not None
    assert hub.name == name


async def test_a_name_with_a_control_character_is_announced(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, zeroconf: MagicMock
) -> None:
    """An earlier version stored a pasted tab; zeroconf refuses control characters in an instance name."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=DOMAIN, data={**mock_config_entry.data, CONF_CA_NAME: "Sea\tView"}
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    info = zeroconf.async_register_service.await_args.args[0]
    assert info.name == "Sea View Household CA._est._tcp.local."
    runtime: EstRuntime = entry.runtime_data
    assert runtime.service.ca.certificate.subject.rfc4514_string() == "CN=Sea View Household CA"


async def test_a_long_name_is_announced_cut_to_a_dns_label(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, zeroconf: MagicMock
) -> None:
    """17 CJK characters fill the CA's name (64 bytes); the mDNS instance name is cut between characters."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=DOMAIN, data={**mock_config_entry.data, CONF_CA_NAME: "日" * 17}
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = entry.runtime_data
    assert runtime.service.ca.certificate.subject.rfc4514_string() == "CN=" + "日" * 17 + " Household CA"
    info = zeroconf.async_register_service.await_args.args[0]
    assert info.name == "日" * 15 + " Household CA._est._tcp.local."  # 58 bytes: room for zeroconf's "-2"


async def test_reload_keeps_the_ca_and_rebinds(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    first: EstRuntime = init_integration.runtime_data
    fingerprint = first.service.ca.fingerprint
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    second: EstRuntime = init_integration.runtime_data
    assert second is not first
    assert second.service.ca.fingerprint == fingerprint
    async with EstClient(f"https://127.0.0.1:{second.service.port}", second.service.ca.certificate) as client:
        assert await client.cacerts() == [second.service.ca.certificate]


async def test_state_lives_in_private_stores_and_leaves_with_the_entry(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    hass_storage: dict[str, Any],
    config_dir: Path,
    appliance_client: EstClient,
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    await runtime.decisions.async_preregister("oven", "123456", None)
    await appliance_client.enroll(
        build_csr(ec.generate_private_key(ec.SECP256R1()), "oven"), username="oven", password="123456"
    )
    await runtime.service.flush()
    await hass.async_block_till_done()
    prefix = f"{DOMAIN}.{init_integration.entry_id}"
    assert "PRIVATE KEY" in hass_storage[f"{prefix}.ca"]["data"]["ca"]["private_key"]
    assert "123456" not in str(hass_storage[f"{prefix}.approvals"])
    journal = config_dir / ".storage" / f"{prefix}.ledger_journal"
    assert journal.stat().st_mode & 0o077 == 0
    assert '"appliance":"oven"' in journal.read_text()

    constructed: dict[str, dict[str, Any]] = {}

    class RecordingStore[T: Mapping[str, Any] | Sequence[Any]](Store[T]):
        """Home Assistant's Store, noting how the integration asks for each one."""

        def __init__(self, hass: HomeAssistant, version: int, key: str, **kwargs: Any) -> None:
            super().__init__(hass, version, key, **kwargs)
            constructed[key] = kwargs

    with patch("custom_components.est_pairing.store.Store", RecordingStore):
        assert await hass.config_entries.async_reload(init_integration.entry_id)
        await hass.async_block_till_done()
    assert set(constructed) == {f"{prefix}.ca", f"{prefix}.approvals", f"{prefix}.ledger"}
    for kwargs in constructed.values():
        assert kwargs.get("private") is True
        assert kwargs.get("atomic_writes") is True

    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    assert not [key for key in hass_storage if key.startswith(prefix)]
    assert not journal.exists()


async def test_deleting_the_hub_forgets_the_appliances_the_owner_ignored(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A hub added again starts over (a new CA, no approvals): it does not refuse appliances unasked."""
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_IGNORE}, data={"unique_id": "id:oven", "title": "Kitchen oven"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert len(hass.config_entries.async_entries(DOMAIN, include_ignore=True)) == 2

    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    assert hass.config_entries.async_entries(DOMAIN, include_ignore=True) == []


async def test_port_in_use_is_a_repair_issue_and_setup_retries(
    hass: HomeAssistant, entry_on_taken_port: MockConfigEntry, port_holder: socket.socket, taken_port: int
) -> None:
    entry = entry_on_taken_port
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE)
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["port"] == str(taken_port)

    port_holder.close()
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is None


async def test_ca_nearing_expiry_raises_a_repair_issue(
    hass: HomeAssistant, init_integration: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_CA_EXPIRING) is None
    freezer.move_to(runtime.service.ca.not_valid_after - timedelta(days=100))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_CA_EXPIRING)
    assert issue is not None


async def test_deleting_the_hub_deletes_its_repair_issues(
    hass: HomeAssistant, init_integration: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    freezer.move_to(runtime.service.ca.not_valid_after - timedelta(days=100))
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=["192.168.7.7"]):
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
    issues = ir.async_get(hass)
    assert issues.async_get_issue(DOMAIN, ISSUE_CA_EXPIRING) is not None
    assert issues.async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is not None

    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    assert issues.async_get_issue(DOMAIN, ISSUE_CA_EXPIRING) is None
    assert issues.async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is None


async def test_deleting_a_hub_that_could_not_start_deletes_its_port_issue(
    hass: HomeAssistant, entry_on_taken_port: MockConfigEntry
) -> None:
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is not None
    assert await hass.config_entries.async_remove(entry_on_taken_port.entry_id)
    await hass.async_block_till_done()
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is None


async def test_disabling_a_hub_that_could_not_start_deletes_its_port_issue(
    hass: HomeAssistant, entry_on_taken_port: MockConfigEntry
) -> None:
    """Home Assistant stops retrying without unloading it: the issue says it keeps retrying."""
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is not None
    assert await hass.config_entries.async_set_disabled_by(
        entry_on_taken_port.entry_id, ConfigEntryDisabler.USER
    )
    await hass.async_block_till_done()
    assert state_of(entry_on_taken_port) is ConfigEntryState.NOT_LOADED
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is None


async def test_a_failed_announcement_frees_the_port_for_the_next_attempt(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, zeroconf: MagicMock
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    entry = MockConfigEntry(domain=DOMAIN, unique_id=DOMAIN, data={**mock_config_entry.data, CONF_PORT: port})
    entry.add_to_hass(hass)
    zeroconf.async_register_service.side_effect = OSError("no multicast interface")
    assert not await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_ERROR

    zeroconf.async_register_service.side_effect = None
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert state_of(entry) is ConfigEntryState.LOADED
    runtime: EstRuntime = entry.runtime_data
    assert runtime.service.port == port
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is None


async def test_a_failing_goodbye_still_frees_the_port(
    hass: HomeAssistant, init_integration: MockConfigEntry, zeroconf: MagicMock
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    port = runtime.service.port
    zeroconf.async_unregister_service.side_effect = OSError("no multicast interface")
    with pytest.raises(OSError, match="no multicast"):
        await runtime.async_stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # the listener let go of it
    await runtime.async_stop()  # and a second stop (the unload's) has nothing left to do


async def test_stopping_home_assistant_stops_the_listener_and_keeps_approvals(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_storage: dict[str, Any], zeroconf: MagicMock
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    port = runtime.service.port
    await runtime.decisions.async_preregister("oven", "123456", "Kitchen oven")  # right before the restart

    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    approvals = hass_storage[f"{DOMAIN}.{init_integration.entry_id}.approvals"]["data"]
    assert [registration["appliance_id"] for registration in approvals["registrations"]] == ["oven"]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    zeroconf.async_unregister_service.assert_awaited_once()

    assert await hass.config_entries.async_unload(init_integration.entry_id)  # an unload may follow
    zeroconf.async_unregister_service.assert_awaited_once()


async def test_an_ignored_appliance_deleted_while_the_hub_retries_leaves_its_port_issue(
    hass: HomeAssistant, entry_on_taken_port: MockConfigEntry
) -> None:
    """Ignored appliances are entries of this domain too: their changes say nothing about the hub."""
    ignored = MockConfigEntry(domain=DOMAIN, unique_id="id:oven", source=SOURCE_IGNORE, title="Kitchen oven")
    ignored.add_to_hass(hass)
    assert await hass.config_entries.async_remove(ignored.entry_id)  # the owner hears from it again
    await hass.async_block_till_done()
    assert state_of(entry_on_taken_port) is ConfigEntryState.SETUP_RETRY
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_PORT_UNAVAILABLE) is not None
