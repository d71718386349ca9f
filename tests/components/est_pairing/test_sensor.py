"""Sensors: each appliance's certificate expiry and status; the household CA's expiry, fingerprint, queue."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from syrupy.assertion import SnapshotAssertion

from custom_components.est_pairing.const import DOMAIN
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient

from . import SNAPSHOT_TIME, entity_state, paired_oven, with_two_appliances


@pytest.mark.freeze_time(SNAPSHOT_TIME)
@pytest.mark.parametrize("platforms", [[Platform.SENSOR]], ids=["sensor"])
@pytest.mark.usefixtures("mock_est_service", "init_integration")
async def test_entities(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await with_two_appliances(hass, mock_config_entry.runtime_data)
    await snapshot_platform(hass, entity_registry, snapshot, mock_config_entry.entry_id)
    # The hub's sensors are the hub device's; each appliance's, its own device's.
    for entity in er.async_entries_for_config_entry(entity_registry, mock_config_entry.entry_id):
        device = device_registry.async_get(entity.device_id or "")
        assert device is not None
        ((domain, owner),) = device.identifiers
        assert domain == DOMAIN
        assert entity.unique_id.startswith(f"{mock_config_entry.entry_id}_{owner}_") or (
            owner == mock_config_entry.entry_id and entity.config_subentry_id is None
        )


async def test_status_follows_the_clock(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient, freezer: FrozenDateTimeFactory
) -> None:
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    freezer.move_to(certificate.not_valid_after_utc - timedelta(days=10))
    async_fire_time_changed(hass, dt_util.utcnow())
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entity_state(hass, "_oven_certificate_status") == "expiring"
    freezer.move_to(certificate.not_valid_after_utc + timedelta(hours=2))
    async_fire_time_changed(hass, dt_util.utcnow())
    await hass.async_block_till_done(wait_background_tasks=True)
    assert entity_state(hass, "_oven_certificate_status") == "expired"
