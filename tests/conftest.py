"""Fixtures shared by the Home Assistant tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
import socket
from unittest.mock import MagicMock, patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.est_pairing.const import CONF_CA_NAME, CONF_PORT, DOMAIN
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient

ANNOUNCE_ADDRESSES = ["192.168.1.2"]


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ in every test."""


@pytest.fixture(autouse=True)
def zeroconf(mock_async_zeroconf: MagicMock) -> MagicMock:
    """Home Assistant's shared zeroconf instance, mocked: nothing multicasts in unit tests.

    Unregistering returns the goodbye broadcast to await, as python-zeroconf's does.
    """
    mock_async_zeroconf.async_unregister_service.side_effect = lambda _info: asyncio.sleep(0)
    return mock_async_zeroconf


@pytest.fixture(autouse=True)
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """A configuration directory per test: the ledger journal is a real file beside .storage."""
    hass.config.config_dir = str(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def loopback_only(socket_enabled: None) -> Iterator[None]:
    """The real EST listener, bound to 127.0.0.1; Home Assistant's announce addresses fixed."""
    with (
        patch("custom_components.est_pairing.runtime.BIND_HOST", "127.0.0.1"),
        patch(
            "homeassistant.components.network.async_get_announce_addresses",
            return_value=ANNOUNCE_ADDRESSES,
        ),
        patch("custom_components.est_pairing.announcement.socket.gethostname", return_value="ha-test"),
    ):
        yield


@pytest.fixture
def mock_config_entry() -> MockConfigEntry:
    """The hub, on an ephemeral port."""
    return MockConfigEntry(
        domain=DOMAIN,
        unique_id=DOMAIN,
        title="Home Household CA",
        data={CONF_CA_NAME: "Home", CONF_PORT: 0},
    )


@pytest.fixture
async def init_integration(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> MockConfigEntry:
    """The hub, set up."""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    return mock_config_entry


@pytest.fixture
def port_holder() -> Iterator[socket.socket]:
    """Something else listening on a port (close it to free the port)."""
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        yield taken


@pytest.fixture
def taken_port(port_holder: socket.socket) -> int:
    """The port :func:`port_holder` holds."""
    port: int = port_holder.getsockname()[1]
    return port


@pytest.fixture
async def entry_on_taken_port(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, taken_port: int
) -> MockConfigEntry:
    """The hub configured for a port something else holds: set up, it waits to retry."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=DOMAIN, data={**mock_config_entry.data, CONF_PORT: taken_port}
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY
    return entry


@pytest.fixture
def runtime(init_integration: MockConfigEntry) -> EstRuntime:
    """The running hub's runtime."""
    value: EstRuntime = init_integration.runtime_data
    return value


@pytest.fixture
async def appliance_client(runtime: EstRuntime) -> AsyncIterator[EstClient]:
    """The project's EST client, as an appliance that already trusts the household CA."""
    client = EstClient(f"https://127.0.0.1:{runtime.service.port}", runtime.service.ca.certificate)
    yield client
    await client.close()


def device_for(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry | None:
    """The device with identifier (DOMAIN, identifier), found the same way on every supported release."""
    registry = dr.async_get(hass)
    for entry in hass.config_entries.async_entries(DOMAIN):
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
            if (DOMAIN, identifier) in device.identifiers:
                return device
    return None
