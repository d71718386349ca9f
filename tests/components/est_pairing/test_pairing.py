"""Pairing as the owner sees it, with the real listener and the project's EST client as the appliance."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import (
    SOURCE_IGNORE,
    ConfigEntryDisabler,
    ConfigEntryState,
    ConfigFlowResult,
)
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.est_pairing import async_remove_config_entry_device
from custom_components.est_pairing.const import CONF_APPLIANCE_ID, CONF_APPLIANCES, DOMAIN, UPKEEP_INTERVAL
from custom_components.est_pairing.est.csr import ApplianceDetails
from custom_components.est_pairing.est.errors import (
    CertificateRevoked,
    LockedOut,
    NotAllowed,
    ProofMismatch,
)
from custom_components.est_pairing.est.fingerprints import format_fingerprint, public_key_fingerprint
from custom_components.est_pairing.est.limits import PENDING_IDLE_TTL, PENDING_TTL
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, Pending, build_csr, renewal_csr

from . import ask, assert_renewal_refused, device_for, entity_state, key, paired_oven


def fingerprint(private_key: ec.EllipticCurvePrivateKey) -> str:
    return public_key_fingerprint(private_key.public_key())


def flows(hass: HomeAssistant) -> list[ConfigFlowResult]:
    return list(hass.config_entries.flow.async_progress_by_handler(DOMAIN))


async def approve_with_its_pin(hass: HomeAssistant) -> None:
    """The owner opens the one card under Discovered and types the oven's PIN: approved."""
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "482913"})
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "approved"


def placeholders(result: ConfigFlowResult) -> Mapping[str, str]:
    """The description placeholders a form or menu shows (every step here has some)."""
    values = result["description_placeholders"]
    assert values is not None
    return values


def asked(result: ConfigFlowResult) -> list[str]:
    """The fields a form asks for."""
    schema = result["data_schema"]
    assert schema is not None
    return [str(marker) for marker in schema.schema]


def shown_on_device(hass: HomeAssistant, appliance_id: str) -> tuple[str | None, ...]:
    """Name, model, manufacturer and serial number of the appliance's device."""
    device = device_for(hass, appliance_id)
    assert device is not None
    return (device.name, device.model, device.manufacturer, device.serial_number)


async def test_pin_pairing_end_to_end(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    assert isinstance(await ask(hass, appliance_client, oven_key), Pending)
    assert entity_state(hass, "_pending_requests") == "1"

    (flow,) = flows(hass)
    assert flow["context"]["unique_id"] == "id:oven"
    assert flow["context"]["title_placeholders"] == {"name": "Kitchen oven"}
    assert flow["step_id"] == "confirm"
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])  # show the menu again
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["pin", "fingerprint", "reject"]
    shown = placeholders(result)
    assert shown["appliance_id"] == "oven"
    assert shown["model"] == r"OV\-200"  # markdown-escaped: it shows as OV-200
    assert shown["manufacturer"] == "Acme"
    assert shown["serial_number"] == r"SN\-42"
    assert shown["address"] == "127.0.0.1"
    assert len(shown["short_fingerprint"].split()) == 4
    assert len(shown["fingerprint"].split()) == 16

    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    assert result["step_id"] == "pin"
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "000000"})
    assert result["errors"] == {"pin": "wrong_pin"}
    assert placeholders(result)["attempts_left"] == "2"
    assert not hass.config_entries.async_entries(DOMAIN)[0].subentries  # nothing before the right PIN

    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "482913"})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "approved"
    assert flows(hass) == []

    assert shown_on_device(hass, "oven") == ("Kitchen oven", "OV-200", "Acme", "SN-42")
    assert entity_state(hass, "_oven_certificate_status") == "awaiting_enrollment"

    certificate = await ask(hass, appliance_client, oven_key)
    assert isinstance(certificate, x509.Certificate)
    certificate.verify_directly_issued_by(runtime.service.ca.certificate)
    assert certificate.subject.rfc4514_string() == "CN=oven"
    assert entity_state(hass, "_oven_certificate_status") == "valid"
    assert entity_state(hass, "_oven_certificate_expiry") == certificate.not_valid_after_utc.isoformat()
    assert entity_state(hass, "_pending_requests") == "0"

    renewed = await appliance_client.reenroll(renewal_csr(oven_key, certificate), certificate, oven_key)
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_expiry") == renewed.not_valid_after_utc.isoformat()


async def test_fingerprint_pairing(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    assert isinstance(await ask(hass, appliance_client, oven_key, pin=""), Pending)
    (flow,) = flows(hass)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert result["menu_options"] == ["fingerprint", "reject"]
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "fingerprint"})
    pending = runtime.service.policy.pending_requests()[0]
    assert placeholders(result)["fingerprint"].replace(" ", "").lower() == pending.key_fingerprint
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"fingerprints_match": False})
    assert result["errors"] == {"base": "confirm_match"}
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"fingerprints_match": True})
    assert result["reason"] == "approved"
    assert isinstance(await ask(hass, appliance_client, oven_key, pin=""), x509.Certificate)


async def test_reject_makes_the_next_retry_403(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    await ask(hass, appliance_client, oven_key)
    (flow,) = flows(hass)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "reject"})
    assert result["reason"] == "rejected"
    with pytest.raises(NotAllowed, match="403"):
        await ask(hass, appliance_client, oven_key)
    assert len(runtime.service.ledger) == 0


async def test_ignoring_the_discovery_rejects_it(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    await ask(hass, appliance_client, oven_key)
    assert len(flows(hass)) == 1
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_IGNORE}, data={"unique_id": "id:oven", "title": "Kitchen oven"}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert flows(hass) == []
    with pytest.raises(NotAllowed, match="403"):
        await ask(hass, appliance_client, oven_key)

    # While it is ignored, a request with another key is refused too, not left to wait a day for a
    # decision nobody is asked for.
    with pytest.raises(NotAllowed, match="ignored"):
        await ask(hass, appliance_client, key())
    assert flows(hass) == []
    assert runtime.service.policy.pending_requests() == []

    # Deleting the ignored entry lets it ask again, with the same key.
    assert await hass.config_entries.async_remove(result["result"].entry_id)
    assert isinstance(await ask(hass, appliance_client, oven_key), Pending)
    assert len(flows(hass)) == 1


async def test_wrong_pins_stop_the_flow_and_lock_the_appliance(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    await ask(hass, appliance_client, oven_key)
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    for _ in range(2):
        result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "111111"})
        assert result["errors"] == {"pin": "wrong_pin"}
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "111111"})
    assert result["reason"] == "locked_out"
    with pytest.raises(LockedOut):
        await ask(hass, appliance_client, oven_key)
    assert len(runtime.service.ledger) == 0


async def test_one_flow_per_appliance_id_and_the_next_key_gets_its_turn(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    first, second = key(), key()
    await ask(hass, appliance_client, first)
    await ask(hass, appliance_client, second)
    (flow,) = flows(hass)
    assert len(runtime.service.policy.pending_requests()) == 2
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "reject"})
    await hass.async_block_till_done()
    (next_flow,) = flows(hass)
    assert next_flow["flow_id"] != flow["flow_id"]
    result = await hass.config_entries.flow.async_configure(next_flow["flow_id"], {"next_step_id": "pin"})
    result = await hass.config_entries.flow.async_configure(next_flow["flow_id"], {"pin": "482913"})
    assert result["reason"] == "approved"
    assert isinstance(await ask(hass, appliance_client, second), x509.Certificate)
    with pytest.raises(NotAllowed):
        await ask(hass, appliance_client, first)


async def test_the_next_key_gets_its_card_when_the_owner_opens_an_expired_one(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient, freezer: FrozenDateTimeFactory
) -> None:
    """The first key's appliance stopped asking; the hourly check has not dropped it yet."""
    await ask(hass, appliance_client, key())
    freezer.tick(timedelta(minutes=10))
    await ask(hass, appliance_client, key())
    (flow,) = flows(hass)
    freezer.tick(timedelta(seconds=PENDING_IDLE_TTL) - timedelta(minutes=4))  # the first is past it
    result = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "request_gone"
    await hass.async_block_till_done()
    (second,) = flows(hass)
    assert second["flow_id"] != flow["flow_id"]
    menu = await hass.config_entries.flow.async_configure(second["flow_id"])
    assert menu["type"] is FlowResultType.MENU


async def test_flows_close_when_their_request_expires_or_the_hub_unloads(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, freezer: FrozenDateTimeFactory
) -> None:
    mock_config_entry.add_to_hass(hass)
    # The periodic refresh closes them by itself, not the pending requests sensor reading the policy.
    er.async_get(hass).async_get_or_create(
        "sensor",
        DOMAIN,
        f"{mock_config_entry.entry_id}_pending_requests",
        config_entry=mock_config_entry,
        disabled_by=er.RegistryEntryDisabler.USER,
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = mock_config_entry.runtime_data
    url = f"https://127.0.0.1:{runtime.service.port}"
    async with EstClient(url, runtime.service.ca.certificate) as client:
        await ask(hass, client, key())
        assert len(flows(hass)) == 1
        freezer.tick(timedelta(seconds=PENDING_TTL) + UPKEEP_INTERVAL)
        async_fire_time_changed(hass)
        await hass.async_block_till_done(wait_background_tasks=True)
        assert flows(hass) == []

        await ask(hass, client, key())
    assert len(flows(hass)) == 1
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert flows(hass) == []


async def test_approving_after_the_request_is_gone(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await ask(hass, appliance_client, key())
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "fingerprint"})
    runtime.service.policy.reject(runtime.service.policy.pending_requests()[0].request_id)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"fingerprints_match": True})
    assert result["reason"] == "request_gone"


async def test_preregistered_appliance_enrolls_unattended(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await hass.services.async_call(
        DOMAIN,
        "preregister_appliance",
        {"appliance_id": "oven", "pin": "482913", "name": "Kitchen oven"},
        blocking=True,
    )
    await hass.async_block_till_done()
    certificate = await ask(hass, appliance_client, key())
    assert isinstance(certificate, x509.Certificate)
    assert flows(hass) == []
    assert device_for(hass, "oven") is not None
    assert entity_state(hass, "_oven_certificate_status") == "valid"


async def test_a_preregistration_admits_its_first_key_only(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """The PIN given to the pre-register action mints no certificate for a second key behind the owner."""
    await hass.services.async_call(
        DOMAIN, "preregister_appliance", {"appliance_id": "oven", "pin": "482913"}, blocking=True
    )
    first = key()
    certificate = await ask(hass, appliance_client, first)
    assert isinstance(certificate, x509.Certificate)
    for _ in range(3):  # other keys with the right PIN: the owner is asked, nothing is issued
        assert isinstance(await ask(hass, appliance_client, key()), Pending)
    (flow,) = flows(hass)
    menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert (menu["step_id"], menu["menu_options"]) == ("confirm_paired", ["pin", "reject"])
    assert await ask(hass, appliance_client, first) == certificate  # its retry: the same certificate
    assert len(runtime.service.ledger) == 1


async def test_preregistering_an_appliance_under_discovered_removes_its_card(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    assert isinstance(await ask(hass, appliance_client, oven_key), Pending)
    assert len(flows(hass)) == 1
    await runtime.decisions.async_preregister("oven", "482913", "Kitchen oven")  # from the hub's dialog
    await hass.async_block_till_done()
    assert flows(hass) == []
    assert entity_state(hass, "_pending_requests") == "0"
    assert isinstance(await ask(hass, appliance_client, oven_key), x509.Certificate)
    assert flows(hass) == []


async def test_a_preregistered_appliance_shows_what_it_reports_when_it_enrolls(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)  # by name; says OVEN
    assert shown_on_device(hass, "oven") == ("Kitchen oven", "OV-200", "Acme", "SN-42")
    (subentry,) = init_integration.subentries.values()
    assert subentry.data["model"] == "OV-200"

    # Later certificates only fill gaps: what the subentry holds stays.
    renamed = {**subentry.data, "model": "OV-2"}
    hass.config_entries.async_update_subentry(init_integration, subentry, data=renamed)
    await appliance_client.reenroll(renewal_csr(key(), certificate), certificate, oven_key)
    await hass.async_block_till_done()
    assert len(runtime.service.ledger.for_appliance("oven")) == 2
    assert init_integration.subentries[subentry.subentry_id].data["model"] == "OV-2"


async def test_details_learnt_just_before_a_crash_reach_the_device_at_start(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await paired_oven(hass, runtime, appliance_client)
    (subentry,) = init_integration.subentries.values()
    forgotten = {**subentry.data, "model": None, "manufacturer": None, "serial_number": None}
    hass.config_entries.async_update_subentry(init_integration, subentry, data=forgotten)  # as if never saved
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    (subentry,) = init_integration.subentries.values()
    assert (subentry.data["model"], subentry.data["manufacturer"], subentry.data["serial_number"]) == (
        "OV-200",
        "Acme",
        "SN-42",
    )


async def test_revoking_before_the_first_certificate_shows_revoked(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """Pre-registered (or approved) but not yet enrolled: the button withdraws the approval."""
    await runtime.decisions.async_preregister("oven", "482913", "Kitchen oven")
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_status") == "awaiting_enrollment"
    registry = er.async_get(hass)
    (button,) = [e.entity_id for e in registry.entities.values() if e.domain == "button"]
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: button}, blocking=True)
    await hass.async_block_till_done()
    assert runtime.service.policy.registration("oven") is None
    assert entity_state(hass, "_oven_certificate_status") == "revoked"
    # It now waits for the owner like any newcomer; approved again, it awaits its certificate again.
    assert isinstance(await ask(hass, appliance_client, key()), Pending)
    assert entity_state(hass, "_oven_certificate_status") == "revoked"
    await approve_with_its_pin(hass)
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_status") == "awaiting_enrollment"


async def test_an_appliance_approved_again_after_a_revocation_awaits_its_certificate(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """Its revoked certificate is no longer what it stands on: the new approval is."""
    await paired_oven(hass, runtime, appliance_client)
    await runtime.decisions.async_revoke("oven")
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_status") == "revoked"
    new_key = key()
    assert isinstance(await ask(hass, appliance_client, new_key), Pending)
    await approve_with_its_pin(hass)
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_status") == "awaiting_enrollment"
    assert isinstance(await ask(hass, appliance_client, new_key), x509.Certificate)
    assert entity_state(hass, "_oven_certificate_status") == "valid"


async def test_pairing_a_revoked_appliance_again_keeps_its_details_unless_told(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await paired_oven(hass, runtime, appliance_client)
    hass.config_entries.async_update_subentry(
        init_integration, next(iter(init_integration.subentries.values())), title="Oven by the window"
    )
    rebuilt = ApplianceDetails(name="Oven", model="OV-300", manufacturer="Acme")  # and no serial number
    for use_new_details, shown in ((False, ("OV-200", "Acme", "SN-42")), (True, ("OV-300", "Acme", None))):
        await runtime.decisions.async_revoke("oven")
        await hass.async_block_till_done()
        pending = await appliance_client.simpleenroll(  # a new key, and new details
            build_csr(key(), "oven", details=rebuilt), username="oven", password="482913"
        )
        await hass.async_block_till_done()
        assert isinstance(pending, Pending)
        (flow,) = flows(hass)
        menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
        assert menu["step_id"] == "confirm_again"  # its device is kept: what it shows, beside the request
        shown_now = [placeholders(menu)[k] for k in ("paired_name", "paired_model", "paired_serial_number")]
        assert shown_now == ["Oven by the window", r"OV\-200", r"SN\-42"]  # kept the first time round
        assert (placeholders(menu)["model"], placeholders(menu)["serial_number"]) == (r"OV\-300", "-")
        form = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
        assert "use_new_details" in asked(form)  # unticked, the device keeps its details
        answer = {"pin": "482913", "use_new_details": True} if use_new_details else {"pin": "482913"}
        result = await hass.config_entries.flow.async_configure(flow["flow_id"], answer)
        await hass.async_block_till_done()
        assert result["reason"] == "approved"
        (subentry,) = init_integration.subentries.values()  # the same subentry
        assert subentry.title == "Oven by the window"  # the owner's name for it stays
        assert shown_on_device(hass, "oven")[1:] == shown


async def test_removing_the_appliance_revokes_it(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    (subentry_id,) = init_integration.subentries
    hass.config_entries.async_remove_subentry(init_integration, subentry_id)
    await hass.async_block_till_done()
    assert device_for(hass, "oven") is None
    record = runtime.service.ledger.get(certificate.serial_number)
    assert record is not None
    assert record.revoked
    with pytest.raises(CertificateRevoked):
        await appliance_client.reenroll(renewal_csr(oven_key, certificate), certificate, oven_key)


async def restart_without_the_subentry(
    hass: HomeAssistant, entry: MockConfigEntry, *, keep_mark: bool
) -> EstRuntime:
    """Unload the hub, drop the appliance's subentry (and its mark in the entry, unless kept), set up."""
    assert await hass.config_entries.async_unload(entry.entry_id)
    (subentry_id,) = entry.subentries
    hass.config_entries.async_remove_subentry(entry, subentry_id)
    if not keep_mark:
        hass.config_entries.async_update_entry(
            entry, data={k: v for k, v in entry.data.items() if k != CONF_APPLIANCES}
        )
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    restarted: EstRuntime = entry.runtime_data
    return restarted


async def test_an_appliance_removed_while_the_hub_is_not_running_is_revoked_at_start(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    restarted = await restart_without_the_subentry(hass, init_integration, keep_mark=True)
    record = restarted.service.ledger.get(certificate.serial_number)
    assert record is not None
    assert record.revoked
    assert restarted.service.policy.registration("oven") is None
    await assert_renewal_refused(restarted, certificate, oven_key)


async def test_an_appliance_approved_just_before_a_crash_is_added_again_not_revoked(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    assert init_integration.data[CONF_APPLIANCES] == ["oven"]
    # Home Assistant died before its delayed write of the config entries: the approval and the
    # certificate are on disk, the subentry and its mark are not.
    restarted = await restart_without_the_subentry(hass, init_integration, keep_mark=False)
    (subentry,) = init_integration.subentries.values()
    assert (subentry.data[CONF_APPLIANCE_ID], subentry.title) == ("oven", "Kitchen oven")
    assert init_integration.data[CONF_APPLIANCES] == ["oven"]
    assert not restarted.service.ledger.get(certificate.serial_number).revoked  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{restarted.service.port}"
    async with EstClient(url, restarted.service.ca.certificate) as client:
        renewed = await client.reenroll(renewal_csr(oven_key, certificate), certificate, oven_key)
    assert renewed.public_key() == oven_key.public_key()


async def test_deleting_the_device_revokes_and_removes_the_appliance(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    oven = device_for(hass, "oven")
    hub = device_for(hass, init_integration.entry_id)
    assert oven is not None
    assert hub is not None
    assert not await async_remove_config_entry_device(hass, init_integration, hub)
    assert await async_remove_config_entry_device(hass, init_integration, oven)
    await hass.async_block_till_done()
    assert init_integration.subentries == {}
    assert runtime.service.ledger.get(certificate.serial_number).revoked  # type: ignore[union-attr]


async def test_deleting_the_device_of_a_disabled_hub_revokes_the_appliance_at_start(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_ws_client: WebSocketGenerator,
) -> None:
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    oven = device_for(hass, "oven")
    assert oven is not None
    assert await hass.config_entries.async_set_disabled_by(
        init_integration.entry_id, ConfigEntryDisabler.USER
    )
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.NOT_LOADED

    # The device page's delete, as the frontend sends it.
    assert await async_setup_component(hass, "config", {})
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {
            "type": "config/device_registry/remove_config_entry",
            "config_entry_id": init_integration.entry_id,
            "device_id": oven.id,
        }
    )
    response = await client.receive_json()
    assert response["success"], response
    await hass.async_block_till_done()
    assert device_for(hass, "oven") is None
    assert init_integration.subentries == {}

    assert await hass.config_entries.async_set_disabled_by(init_integration.entry_id, None)
    await hass.async_block_till_done()
    restarted: EstRuntime = init_integration.runtime_data
    assert restarted.service.ledger.get(certificate.serial_number).revoked  # type: ignore[union-attr]
    assert restarted.service.policy.registration("oven") is None


async def test_appliances_survive_a_reload(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, _ = await paired_oven(hass, runtime, appliance_client)
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert entity_state(hass, "_oven_certificate_expiry") == certificate.not_valid_after_utc.isoformat()
    reloaded: EstRuntime = init_integration.runtime_data
    assert reloaded.service.policy.registration("oven") is not None


async def test_approving_a_case_twin_of_a_paired_appliance_is_refused(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await ask(hass, appliance_client, key())  # "oven" waits
    await runtime.decisions.async_preregister("OVEN", "123456", None)  # meanwhile its case twin
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "482913"})
    assert result["reason"] == "name_taken"
    assert runtime.service.policy.registration("oven") is None
    # Its request goes with its card: no invisible request waits, counted as pending, for hours.
    await hass.async_block_till_done()
    assert runtime.service.policy.pending_requests() == []
    assert entity_state(hass, "_pending_requests") == "0"


async def owner_approves_with_pin(hass: HomeAssistant, pin: str = "482913") -> ConfigFlowResult:
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": pin})
    await hass.async_block_till_done()
    return result


async def test_a_stranger_key_waiting_beside_a_paired_appliance_cannot_replace_its_pin(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """Its dialog, opened after the owner paired the real oven, says so and offers only to reject."""
    oven_key, stranger_key = key(), key()
    assert isinstance(await ask(hass, appliance_client, oven_key), Pending)
    assert isinstance(await ask(hass, appliance_client, stranger_key, pin=""), Pending)  # same name, no PIN
    assert (await owner_approves_with_pin(hass))["reason"] == "approved"

    (waiting,) = runtime.service.policy.pending_requests()  # the stranger's turn comes right after
    with pytest.raises(ProofMismatch):
        await runtime.decisions.async_approve(waiting.request_id, pin=None)  # fingerprints cannot pass a PIN
    (flow,) = flows(hass)
    menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert menu["step_id"] == "confirm_refused"  # not "Already paired: no" from when it arrived
    assert menu["menu_options"] == ["reject"]
    shown = placeholders(menu)
    assert shown["paired_key"] == format_fingerprint(fingerprint(oven_key), groups=4)
    assert shown["short_fingerprint"] == format_fingerprint(fingerprint(stranger_key), groups=4)
    with pytest.raises(InvalidData):
        await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "fingerprint"})

    assert isinstance(await ask(hass, appliance_client, oven_key), x509.Certificate)  # its PIN still works
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "reject"})
    assert result["reason"] == "rejected"
    await hass.async_block_till_done()

    # The real oven, reset, with a new key: its PIN, typed by the owner, and nothing less.
    new_key = key()
    assert isinstance(await ask(hass, appliance_client, new_key), Pending)
    (flow,) = flows(hass)
    menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert (menu["step_id"], menu["menu_options"]) == ("confirm_paired", ["pin", "reject"])
    assert placeholders(menu)["paired_key"] == format_fingerprint(fingerprint(oven_key), groups=4)
    assert (await owner_approves_with_pin(hass))["reason"] == "approved"
    assert isinstance(await ask(hass, appliance_client, new_key), x509.Certificate)
    registration = runtime.service.policy.registration("oven")
    assert registration is not None and registration.verifier is not None


async def test_re_pairing_a_fingerprint_paired_appliance_shows_the_change_and_keeps_its_details(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    oven_key = key()
    await ask(hass, appliance_client, oven_key, pin="")
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "fingerprint"})
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"fingerprints_match": True})
    assert isinstance(await ask(hass, appliance_client, oven_key, pin=""), x509.Certificate)
    assert shown_on_device(hass, "oven") == ("Kitchen oven", "OV-200", "Acme", "SN-42")

    other = ApplianceDetails(name="Oven", model="X-1", manufacturer="Evil", serial_number="SN-666")
    for use_new_details, shown in ((False, ("OV-200", "Acme", "SN-42")), (True, ("X-1", "Evil", "SN-666"))):
        await appliance_client.simpleenroll(
            build_csr(key(), "oven", details=other), username="oven", password=""
        )
        await hass.async_block_till_done()
        (flow,) = flows(hass)
        menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
        form = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"next_step_id": "fingerprint"}
        )
        answer = {"fingerprints_match": True, "use_new_details": use_new_details}
        result = await hass.config_entries.flow.async_configure(flow["flow_id"], answer)
        await hass.async_block_till_done()
        assert result["reason"] == "approved"
        assert shown_on_device(hass, "oven") == ("Kitchen oven", *shown)  # its name is the owner's
        assert (menu["step_id"], menu["menu_options"]) == ("confirm_paired", ["fingerprint", "reject"])
        listed = placeholders(menu)
        assert [listed[k] for k in ("paired_model", "model", "paired_manufacturer", "manufacturer")] == [
            r"OV\-200",  # kept the first time round
            r"X\-1",
            "Acme",
            "Evil",
        ]
        assert "use_new_details" in asked(form)
    registration = runtime.service.policy.registration("oven")
    assert registration is not None and len(registration.keys) == 3


async def test_what_reorders_or_hides_text_never_reaches_the_card_or_the_device(
    hass: HomeAssistant, init_integration: MockConfigEntry, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    sly = ApplianceDetails(name="Front door lock\u202e\u200bkcol", model="\u2066L-1\u2069")
    await appliance_client.simpleenroll(
        build_csr(key(), "lock", details=sly), username="lock", password="246810"
    )
    await hass.async_block_till_done()
    (flow,) = flows(hass)
    assert flow["context"]["title_placeholders"] == {"name": "Front door lockkcol"}
    menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
    assert (placeholders(menu)["name"], placeholders(menu)["model"]) == ("Front door lockkcol", r"L\-1")
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "246810"})
    await hass.async_block_till_done()
    (subentry,) = init_integration.subentries.values()
    assert subentry.title == "Front door lockkcol"
    assert shown_on_device(hass, "lock")[:2] == ("Front door lockkcol", "L-1")


async def test_a_dialog_open_while_the_appliance_gets_paired_elsewhere_cannot_approve(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """The fingerprint page was right when it opened; by the time it is sent, the appliance has a PIN."""
    stranger_key, oven_key = key(), key()
    assert isinstance(await ask(hass, appliance_client, stranger_key, pin=""), Pending)  # its dialog first
    assert isinstance(await ask(hass, appliance_client, oven_key), Pending)
    (flow,) = flows(hass)
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "fingerprint"})
    real = next(
        p for p in runtime.service.policy.pending_requests() if p.key_fingerprint == fingerprint(oven_key)
    )
    await runtime.decisions.async_approve(real.request_id, pin="482913")  # meanwhile, from another dialog
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"fingerprints_match": True})
    assert result["reason"] == "cannot_approve"
    registration = runtime.service.policy.registration("oven")
    assert registration is not None and registration.keys == {fingerprint(oven_key)}
    # The stranger's request still waits: its card comes back, where the owner can reject it.
    await hass.async_block_till_done()
    (card,) = flows(hass)
    (waiting,) = runtime.service.policy.pending_requests()
    assert waiting.key_fingerprint == fingerprint(stranger_key)
    assert card["context"]["unique_id"] == waiting.identity


async def test_rejecting_a_request_that_is_gone(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    await ask(hass, appliance_client, key())
    (flow,) = flows(hass)
    runtime.service.policy.withdraw(runtime.service.policy.pending_requests()[0].request_id)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "reject"})
    assert result["reason"] == "request_gone"


async def test_a_dialog_that_finds_the_appliance_locked_keeps_its_card(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """Locked by its own wrong secrets meanwhile: the owner cannot decide now, but can later."""
    await ask(hass, appliance_client, key())
    (flow,) = flows(hass)
    (pending,) = runtime.service.policy.pending_requests()
    await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    runtime.service.policy.throttle.lock(pending.identity)
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": "482913"})
    assert result["reason"] == "locked_out"
    await hass.async_block_till_done()
    (card,) = flows(hass)
    assert card["context"]["unique_id"] == pending.identity
    assert runtime.service.policy.pending_requests() == [pending]
