"""The coordinator: one snapshot of the hub, pushed on every change; reading it changes nothing."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.est_pairing.const import DOMAIN, UPKEEP_INTERVAL
from custom_components.est_pairing.diagnostics import async_get_config_entry_diagnostics
from custom_components.est_pairing.est.limits import PENDING_IDLE_TTL
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, Pending

from . import ask, entity_state, key


def cards(hass: HomeAssistant) -> int:
    """Discovery cards (flows) of the hub."""
    return len(hass.config_entries.flow.async_progress_by_handler(DOMAIN))


async def test_reading_the_hub_changes_nothing(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    freezer: FrozenDateTimeFactory,
) -> None:
    """A request whose appliance stopped asking stays, card and all, until the hourly upkeep drops it.

    Neither the entities writing their state (here after a pre-registration) nor downloading the
    diagnostics drops it: reading the hub changes nothing.
    """
    assert isinstance(await ask(hass, appliance_client, key()), Pending)
    assert cards(hass) == 1
    assert entity_state(hass, "_pending_requests") == "1"
    freezer.tick(timedelta(seconds=PENDING_IDLE_TTL + 1))

    await hass.services.async_call(
        DOMAIN, "preregister_appliance", {"appliance_id": "fridge", "pin": "551207"}, blocking=True
    )
    await hass.async_block_till_done()
    assert entity_state(hass, "_fridge_certificate_status") == "awaiting_enrollment"  # states written
    # What a download runs (its HTTP view cannot serialize frozen time).
    diagnostics = await async_get_config_entry_diagnostics(hass, init_integration)
    assert diagnostics["pending"] == []  # it shows what waits now
    await hass.async_block_till_done()
    assert cards(hass) == 1

    async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert cards(hass) == 0
    assert entity_state(hass, "_pending_requests") == "0"


@pytest.mark.parametrize("platforms", [[]], ids=["no entities"])
async def test_the_hourly_upkeep_runs_without_entities(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient, freezer: FrozenDateTimeFactory
) -> None:
    """Every entity disabled: waiting requests still expire, and their cards close."""
    assert isinstance(await ask(hass, appliance_client, key()), Pending)
    assert cards(hass) == 1
    freezer.tick(timedelta(seconds=PENDING_IDLE_TTL + 1))
    async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)
    await hass.async_block_till_done(wait_background_tasks=True)
    assert cards(hass) == 0
    assert runtime.coordinator.data.pending_requests == 0


@pytest.mark.parametrize("platforms", [[Platform.SENSOR]], ids=["sensor"])
async def test_a_new_appliance_gets_its_entities_from_the_snapshot(
    hass: HomeAssistant, runtime: EstRuntime
) -> None:
    await runtime.decisions.async_preregister("oven", "482913", "Kitchen oven")
    await hass.async_block_till_done()
    (oven,) = runtime.coordinator.data.appliances.values()
    assert (oven.appliance_id, oven.status, oven.expires) == ("oven", "awaiting_enrollment", None)
    assert entity_state(hass, "_oven_certificate_status") == "awaiting_enrollment"


async def test_a_stream_of_changes_does_not_put_off_the_upkeep(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient, freezer: FrozenDateTimeFactory
) -> None:
    """A change every 40 minutes, each a new snapshot pushed, and the upkeep still runs every hour.

    Any device on the LAN can make such changes (it asks for a certificate); the upkeep also renews
    the listener's certificate and warns of the CA's end.
    """
    assert isinstance(await ask(hass, appliance_client, key()), Pending)
    assert cards(hass) == 1
    for minutes in (40, 80, 120):  # the upkeep is due at 60 and 120
        freezer.tick(timedelta(minutes=40))
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        await runtime.decisions.async_preregister(f"oven{minutes}", "482913", None)
        await hass.async_block_till_done()
        assert entity_state(hass, f"_oven{minutes}_certificate_status") == "awaiting_enrollment"  # pushed
    assert cards(hass) == 0  # the request, idle since the start, expired in an upkeep
    assert entity_state(hass, "_pending_requests") == "0"
