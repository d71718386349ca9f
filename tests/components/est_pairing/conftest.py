"""Fixtures of the Home Assistant side's tests, in the shape Home Assistant core's integration tests use.

The hub runs its real EST listener on 127.0.0.1 (the appliance tests enroll over real TLS); where the
listener is not the point, ``mock_est_service`` stands in for the library's service. Only what Home
Assistant's own test plugin mocks is mocked besides: zeroconf, and the network's announce addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
import contextlib
from enum import Enum
import json
from pathlib import Path
import socket
from typing import Any
from unittest.mock import MagicMock, patch

from homeassistant.config_entries import (
    ConfigEntriesFlowManager,
    ConfigEntryState,
    ConfigSubentryFlowManager,
    OptionsFlowManager,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, State
from homeassistant.data_entry_flow import FlowManager, FlowResult
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import (
    HomeAssistantSnapshotExtension,
    HomeAssistantSnapshotSerializer,
)
from syrupy.assertion import SnapshotAssertion
from syrupy.types import SerializableData

from custom_components.est_pairing import PLATFORMS
from custom_components.est_pairing.const import CONF_CA_NAME, CONF_PORT, DEFAULT_PORT, DOMAIN
from custom_components.est_pairing.est.service import EstService
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient

from . import ANNOUNCE_ADDRESSES, ENTRY_ID, placeholders

FIXTURES = Path(__file__).parent / "fixtures"
# What an entity registry entry shows of an entity, in every supported release (newer ones add fields,
# and keep aliases another way).
REGISTRY_FIELDS = (
    "entity_id",
    "unique_id",
    "platform",
    "translation_key",
    "original_name",
    "original_device_class",
    "original_icon",
    "entity_category",
    "capabilities",
    "unit_of_measurement",
    "supported_features",
    "has_entity_name",
    "disabled_by",
    "hidden_by",
)


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


@pytest.fixture(autouse=True)
def flow_placeholders_given() -> Iterator[None]:
    """Every flow result a test gets gives each placeholder the strings it shows use.

    The frontend formats them with the result's placeholders; one left out shows as ``{name}``.
    Checked on what the flow managers hand back (to the tests as to the frontend).
    """
    managers = (ConfigEntriesFlowManager, OptionsFlowManager, ConfigSubentryFlowManager)
    with contextlib.ExitStack() as stack:
        for manager in managers:
            for method in ("async_init", "async_configure"):
                stack.enter_context(patch.object(manager, method, _checked(getattr(manager, method))))
        yield


def _checked[**P](call: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    async def checked(*args: P.args, **kwargs: P.kwargs) -> Any:
        result = await call(*args, **kwargs)
        manager = args[0]
        assert isinstance(manager, FlowManager)
        if (section := _flow_translations(manager, result)) is not None:
            lacking = placeholders.missing(section, result)
            assert not lacking, f"{result['step_id'] if 'step_id' in result else result['type']}: {lacking}"
        return result

    return checked


def _flow_translations(
    manager: FlowManager[Any, Any, Any], result: FlowResult[Any, Any]
) -> Mapping[str, Any] | None:
    """The part of translations/en.json a result of this integration's flows is shown from."""
    config_entries = manager.hass.config_entries
    handler = result["handler"]
    if isinstance(manager, ConfigSubentryFlowManager):
        entry = config_entries.async_get_entry(handler[0])
        subentries: Mapping[str, Any] = placeholders.TRANSLATIONS["config_subentries"]
        return subentries[handler[1]] if entry is not None and entry.domain == DOMAIN else None
    if isinstance(manager, OptionsFlowManager):
        entry = config_entries.async_get_entry(handler)
        return placeholders.TRANSLATIONS["options"] if entry is not None and entry.domain == DOMAIN else None
    return placeholders.TRANSLATIONS["config"] if handler == DOMAIN else None


def _plain(value: object) -> object:
    """Plain data, which every supported syrupy release writes alike."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(item) for item in value)  # type: ignore[type-var]
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class SameOnEveryRelease(HomeAssistantSnapshotSerializer):  # type: ignore[misc, unused-ignore]
    """Home Assistant's serializer, with registry entries and states as plain data of stable fields."""

    @classmethod
    def _serializable_entity_registry_entry(cls, data: er.RegistryEntry) -> SerializableData:
        return {field: _plain(getattr(data, field)) for field in REGISTRY_FIELDS}

    @classmethod
    def _serializable_state(cls, data: State) -> SerializableData:
        return {"entity_id": data.entity_id, "state": data.state, "attributes": _plain(data.attributes)}


class SnapshotExtension(HomeAssistantSnapshotExtension):  # type: ignore[misc, unused-ignore]
    """Snapshots beside the tests (snapshots/), the same on every supported Home Assistant release."""

    serializer_class = SameOnEveryRelease


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Entity snapshots that hold on both test tiers; registry entries without their random ids."""
    return snapshot.use_extension(SnapshotExtension)


@pytest.fixture
def mock_config_entry() -> MockConfigEntry:
    """The hub, on an ephemeral port."""
    return MockConfigEntry(
        domain=DOMAIN,
        entry_id=ENTRY_ID,
        unique_id=DOMAIN,
        title="Home Household CA",
        data={CONF_CA_NAME: "Home", CONF_PORT: 0},
    )


@pytest.fixture
def platforms() -> list[Platform]:
    """The platforms set up: all of them (a platform's tests take theirs alone)."""
    return PLATFORMS


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, platforms: list[Platform]
) -> MockConfigEntry:
    """The hub, set up."""
    mock_config_entry.add_to_hass(hass)
    with patch("custom_components.est_pairing.PLATFORMS", platforms):
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    return mock_config_entry


class ServiceWithoutListener(EstService):
    """The library's real service, with no socket: it says it listens on the default port."""

    @property
    def port(self) -> int:
        """The port it would listen on."""
        return DEFAULT_PORT

    async def start(self) -> None:
        """Nothing to bind."""


@pytest.fixture
def mock_est_service(hass_storage: dict[str, object]) -> Iterator[type[EstService]]:
    """Stands in for the library's service where its listener is not the point (what entities show).

    The real service, over a household CA saved beforehand (fixtures/household_ca.json, created at
    2026-01-15 10:00 UTC), that binds no socket: entity states are the same at every run.
    """
    hass_storage[f"{DOMAIN}.{ENTRY_ID}.ca"] = {
        "version": 1,
        "minor_version": 1,
        "key": f"{DOMAIN}.{ENTRY_ID}.ca",
        "data": json.loads((FIXTURES / "household_ca.json").read_text()),
    }
    with patch("custom_components.est_pairing.runtime.EstService", ServiceWithoutListener):
        yield ServiceWithoutListener


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
