"""Actions: revoke, pre-register, export the CA; their errors are translated."""

from __future__ import annotations

from collections.abc import Buffer
import errno
import os

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import voluptuous as vol

from custom_components.est_pairing import async_remove_config_entry_device
from custom_components.est_pairing.const import DOMAIN
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, build_csr

from . import device_for


async def test_export_ca(hass: HomeAssistant, runtime: EstRuntime) -> None:
    response = await hass.services.async_call(DOMAIN, "export_ca", blocking=True, return_response=True)
    assert response is not None
    certificate = x509.load_pem_x509_certificate(str(response["certificate"]).encode())
    assert certificate == runtime.service.ca.certificate
    assert response["fingerprint"] == runtime.service.ca.fingerprint
    port = runtime.service.port
    assert response["qr_payload"] == (
        f"est://192.168.1.2:{port}/.well-known/est?sha256={runtime.service.ca.fingerprint}"
    )
    assert response["expires"] == certificate.not_valid_after_utc.isoformat()


async def test_export_ca_takes_no_fields(hass: HomeAssistant, runtime: EstRuntime) -> None:
    with pytest.raises(vol.Invalid):
        await hass.services.async_call(
            DOMAIN, "export_ca", {"format": "der"}, blocking=True, return_response=True
        )


async def test_preregister_validates_its_input(hass: HomeAssistant, runtime: EstRuntime) -> None:
    with pytest.raises(vol.Invalid):
        await hass.services.async_call(
            DOMAIN, "preregister_appliance", {"appliance_id": "oven", "pin": "123"}, blocking=True
        )
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN, "preregister_appliance", {"appliance_id": "../oven", "pin": "123456"}, blocking=True
        )
    assert err.value.translation_key == "invalid_input"
    for public_name in ("oven.local", "login.microsoftonline.com"):  # an id is one DNS label
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(
                DOMAIN, "preregister_appliance", {"appliance_id": public_name, "pin": "123456"}, blocking=True
            )
        placeholders = err.value.translation_placeholders
        assert placeholders is not None and "with no '.'" in placeholders["reason"]
    assert runtime.service.policy.registrations() == []


async def test_preregister_keeps_the_name_and_refuses_a_paired_appliance(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime
) -> None:
    await hass.services.async_call(
        DOMAIN,
        "preregister_appliance",
        {"appliance_id": "oven", "pin": "123456", "name": "Kitchen oven"},
        blocking=True,
    )
    await hass.async_block_till_done()
    registration = runtime.service.policy.registration("oven")
    assert registration is not None
    assert registration.details.name == "Kitchen oven"
    assert [s.title for s in init_integration.subentries.values()] == ["Kitchen oven"]

    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(
            DOMAIN,
            "preregister_appliance",
            {"appliance_id": "oven", "pin": "654321", "name": "Hijacked"},
            blocking=True,
        )
    assert err.value.translation_key == "already_paired"
    assert err.value.translation_placeholders == {"appliance_id": "oven"}
    assert runtime.service.policy.registration("oven") == registration
    assert [s.title for s in init_integration.subentries.values()] == ["Kitchen oven"]


async def test_revoke_needs_an_appliance_device(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    hub = device_for(hass, init_integration.entry_id)
    assert hub is not None
    for device_id in (hub.id, "no-such-device"):
        with pytest.raises(ServiceValidationError) as err:
            await hass.services.async_call(
                DOMAIN, "revoke_certificate", {"device_id": device_id}, blocking=True
            )
        assert err.value.translation_key == "not_an_appliance"


async def test_revoke_by_device(hass: HomeAssistant, runtime: EstRuntime) -> None:
    runtime.decisions.preregister("oven", "123456", "Kitchen oven")
    await hass.async_block_till_done()
    oven = device_for(hass, "oven")
    assert oven is not None
    await hass.services.async_call(DOMAIN, "revoke_certificate", {"device_id": oven.id}, blocking=True)
    assert runtime.service.policy.registration("oven") is None


async def test_actions_need_a_running_hub(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    await hass.config_entries.async_unload(init_integration.entry_id)
    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "export_ca", blocking=True, return_response=True)
    assert err.value.translation_key == "not_loaded"


async def test_a_failing_household_ca_is_a_translated_error(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime.decisions.preregister("oven", "123456", "Kitchen oven")
    await hass.async_block_till_done()
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
    certificate = await appliance_client.enroll(csr, username="oven", password="123456")
    await hass.async_block_till_done()
    oven = device_for(hass, "oven")
    assert oven is not None
    registry = er.async_get(hass)
    (button,) = [e.entity_id for e in registry.entities.values() if e.domain == "button"]

    def disk_full(descriptor: int, data: Buffer) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)  # the ledger cannot record the revocation
    with pytest.raises(HomeAssistantError) as from_action:
        await hass.services.async_call(DOMAIN, "revoke_certificate", {"device_id": oven.id}, blocking=True)
    with pytest.raises(HomeAssistantError) as from_button:
        await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: button}, blocking=True)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    with pytest.raises(HomeAssistantError) as from_device_page:
        await async_remove_config_entry_device(hass, entry, oven)
    monkeypatch.undo()
    for err in (from_action.value, from_button.value, from_device_page.value):
        assert not isinstance(err, ServiceValidationError)
        assert err.translation_key == "operation_failed"
        assert err.translation_placeholders is not None
        assert "No space left on device" in err.translation_placeholders["reason"]
    record = runtime.service.ledger.get(certificate.serial_number)
    assert record is not None
    assert not record.revoked
