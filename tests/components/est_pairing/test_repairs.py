"""The fixable repair issue: Home Assistant's addresses changed under the listener certificate."""

from __future__ import annotations

from datetime import timedelta
from unittest.mock import MagicMock, patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.repairs import DOMAIN as REPAIRS_DOMAIN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.translation import async_get_translations
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from zeroconf import NonUniqueNameException

from custom_components.est_pairing.const import DOMAIN, ISSUE_LISTENER_NAMES, UPKEEP_INTERVAL
from custom_components.est_pairing.est.limits import PENDING_IDLE_TTL
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, Pending

from . import ask, key

NEW_ADDRESSES = ["192.168.7.7"]


async def test_listener_names_issue_and_its_fix(
    hass: HomeAssistant,
    runtime: EstRuntime,
    hass_client: ClientSessionGenerator,
) -> None:
    assert await async_setup_component(hass, REPAIRS_DOMAIN, {})
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=NEW_ADDRESSES):
        async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)
        await hass.async_block_till_done(wait_background_tasks=True)
        issue = ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES)
        assert issue is not None
        assert issue.is_fixable

        client = await hass_client()
        response = await client.post(
            "/api/repairs/issues/fix", json={"handler": DOMAIN, "issue_id": ISSUE_LISTENER_NAMES}
        )
        flow = await response.json()
        assert flow["step_id"] == "confirm"
        # The dialog says why: the issue's words are in its confirm step, with the new addresses.
        translations = await async_get_translations(hass, "en", "issues", [DOMAIN])
        key = f"component.{DOMAIN}.issues.{ISSUE_LISTENER_NAMES}.fix_flow.step.confirm.description"
        shown = translations[key].format(**flow["description_placeholders"])
        assert "Home Assistant is now reached as" in shown
        assert "192.168.7.7" in shown
        response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
        assert (await response.json())["type"] == "create_entry"

    assert "192.168.7.7" in runtime.service.listener_identity.names().all()
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is None


async def _refresh(hass: HomeAssistant, times: int = 1) -> None:
    for _ in range(times):
        async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)
        await hass.async_block_till_done(wait_background_tasks=True)


async def test_the_issue_goes_when_the_addresses_come_back(hass: HomeAssistant, runtime: EstRuntime) -> None:
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=NEW_ADDRESSES):
        await _refresh(hass)
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is not None
    await _refresh(hass)  # the old addresses are back, and the certificate covers them
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is None


async def test_the_announcement_follows_the_new_addresses_while_the_issue_is_open(
    hass: HomeAssistant, runtime: EstRuntime, zeroconf: MagicMock
) -> None:
    """The certificate still covers <host>.local: announced at the new address, appliances reach it there."""
    certificate = runtime.service.listener_identity.certificate
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=NEW_ADDRESSES):
        await _refresh(hass, times=2)
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is not None
    zeroconf.async_update_service.assert_awaited_once()  # once: the second check found it announced there
    info = zeroconf.async_update_service.await_args.args[0]
    assert info.parsed_addresses() == NEW_ADDRESSES
    assert info.server == "ha-test.local."
    assert runtime.service.listener_identity.certificate == certificate  # re-issued only when the owner asks
    assert "ha-test.local" in runtime.service.listener_identity.names().all()
    await _refresh(hass)  # the old addresses are back: announced there again
    assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is None
    assert zeroconf.async_update_service.await_count == 2
    info = zeroconf.async_update_service.await_args.args[0]
    registered = zeroconf.async_register_service.await_args.args[0]
    assert info.parsed_addresses() == registered.parsed_addresses() != NEW_ADDRESSES


async def test_the_issue_goes_when_a_restart_covered_the_new_addresses(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=NEW_ADDRESSES):
        await _refresh(hass)
        assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is not None
        # A reload (an options change, a restart) issues the listener certificate for the names of the day.
        assert await hass.config_entries.async_reload(init_integration.entry_id)
        await hass.async_block_till_done()
        reloaded: EstRuntime = init_integration.runtime_data
        assert "192.168.7.7" in reloaded.service.listener_identity.names().all()
        assert ir.async_get(hass).async_get_issue(DOMAIN, ISSUE_LISTENER_NAMES) is None


async def test_an_announcement_zeroconf_refuses_is_tried_again_and_the_upkeep_goes_on(
    hass: HomeAssistant,
    runtime: EstRuntime,
    zeroconf: MagicMock,
    appliance_client: EstClient,
    freezer: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Zeroconf refusing the new addresses leaves the old announcement, and the rest of the upkeep runs."""
    assert isinstance(await ask(hass, appliance_client, key()), Pending)
    freezer.tick(timedelta(seconds=PENDING_IDLE_TTL + 1))
    zeroconf.async_update_service.side_effect = NonUniqueNameException
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=NEW_ADDRESSES):
        await _refresh(hass)
        assert "Could not announce the EST server at its new addresses" in caplog.text
        assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)  # the request expired
        zeroconf.async_update_service.side_effect = None
        await _refresh(hass)
    assert zeroconf.async_update_service.await_count == 2  # tried again
    assert zeroconf.async_update_service.await_args.args[0].parsed_addresses() == NEW_ADDRESSES
