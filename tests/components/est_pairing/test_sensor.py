"""Sensors: each appliance's certificate expiry and status; the household CA's expiry, fingerprint, queue."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
import re
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.typing import WebSocketGenerator
from syrupy.assertion import SnapshotAssertion
import yaml

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


async def test_the_readmes_automation_tells_of_a_revoked_certificate(
    hass: HomeAssistant,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """The example the README gives, as written there, run by Home Assistant's automation engine."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    example = re.search(r"An automation can watch.*?```yaml\n(.*?)```", readme, re.DOTALL)
    assert example is not None
    automation = yaml.safe_load(example.group(1))
    assert await async_setup_component(hass, "persistent_notification", {})  # part of every install
    assert await async_setup_component(hass, "automation", {"automation": [automation]})
    await paired_oven(hass, runtime, appliance_client)
    await hass.async_block_till_done()
    assert hass.states.get("sensor.kitchen_oven_certificate_status") is not None  # the README's entity id

    async def notifications() -> list[dict[str, Any]]:
        client = await hass_ws_client(hass)
        await client.send_json_auto_id({"type": "persistent_notification/get"})
        answer = await client.receive_json()
        assert answer["success"]
        result: list[dict[str, Any]] = answer["result"]
        return result

    assert await notifications() == []  # awaiting enrollment, then valid: nothing to tell
    await runtime.decisions.async_revoke("oven")
    await hass.async_block_till_done()
    assert [(n["title"], n["message"]) for n in await notifications()] == [
        ("Appliance certificate", "Kitchen oven Certificate status: revoked")
    ]
