"""The button platform: each appliance's revoke button."""

from __future__ import annotations

from homeassistant.const import ATTR_ENTITY_ID, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from custom_components.est_pairing.est.errors import CertificateRevoked
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, renewal_csr

from . import SNAPSHOT_TIME, entity_state, paired_oven, with_two_appliances


@pytest.mark.freeze_time(SNAPSHOT_TIME)
@pytest.mark.parametrize("platforms", [[Platform.BUTTON]], ids=["button"])
@pytest.mark.usefixtures("mock_est_service", "init_integration")
async def test_entities(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await with_two_appliances(hass, mock_config_entry.runtime_data)
    await snapshot_platform(hass, entity_registry, snapshot, mock_config_entry.entry_id)


async def test_revoke_button_blocks_renewal(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    registry = er.async_get(hass)
    (button,) = [e.entity_id for e in registry.entities.values() if e.domain == "button"]
    assert registry.async_get(button).entity_category == "config"  # type: ignore[union-attr]
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: button}, blocking=True)
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_status") == "revoked"
    with pytest.raises(CertificateRevoked):
        await appliance_client.reenroll(renewal_csr(oven_key, certificate), certificate, oven_key)
    crl = await appliance_client.crl()
    assert crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None
