"""The owner's flow for appliances of the PIN exchange: type the PIN, wait for the appliance to prove it.

The appliance is the reference appliance's exchange client (est_tools) over the real listener.
"""

from __future__ import annotations

from datetime import timedelta

from cryptography.hazmat.primitives.serialization import Encoding
from homeassistant.config_entries import ConfigFlowResult
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.est_pairing.const import DOMAIN
from custom_components.est_pairing.est.errors import LockedOut, PairingProofFailed, Rejected
from custom_components.est_pairing.est.limits import EXCHANGE_WAIT, OWNER_PIN_ATTEMPTS
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import Pending, build_csr
from est_tools.appliance.exchange import PinExchangeClient
from est_tools.appliance.pake_client import ApplianceExchange, Paired

from . import OVEN, device_for, entity_state, key, verifiers_held

PIN = "482913"  # printed on the oven


class Oven:
    """The appliance: one key, and the PIN printed on it; each :meth:`exchange` is a whole PIN exchange."""

    def __init__(self, hass: HomeAssistant, runtime: EstRuntime) -> None:
        self.hass = hass
        self.url = f"https://127.0.0.1:{runtime.service.port}"
        self.key = key()
        self.csr = build_csr(self.key, "oven", details=OVEN).public_bytes(Encoding.DER)

    async def exchange(self) -> Paired | Pending:
        async with PinExchangeClient(self.url) as client:
            outcome = await client.attempt(ApplianceExchange("oven", PIN, self.csr))
        await self.hass.async_block_till_done()
        return outcome


@pytest.fixture
async def oven(hass: HomeAssistant, runtime: EstRuntime) -> Oven:
    """The oven, waiting under Discovered (its first exchange found no PIN for it)."""
    appliance = Oven(hass, runtime)
    assert isinstance(await appliance.exchange(), Pending)
    return appliance


def flow_id(hass: HomeAssistant) -> str:
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    return flow["flow_id"]


async def type_pin(hass: HomeAssistant, pin: str, *, from_menu: bool = True) -> ConfigFlowResult:
    """The owner opens the card (or is on the PIN form already) and types a PIN."""
    if from_menu:
        await hass.config_entries.flow.async_configure(flow_id(hass), {"next_step_id": "pin"})
    return await hass.config_entries.flow.async_configure(flow_id(hass), {"pin": pin})


async def after_the_wait(hass: HomeAssistant, flow: str) -> ConfigFlowResult:
    """What the dialog shows once its wait ended (the frontend asks again when told)."""
    await hass.async_block_till_done()
    return await hass.config_entries.flow.async_configure(flow)


def placeholder(result: ConfigFlowResult, name: str) -> str:
    values = result["description_placeholders"]
    assert values is not None
    return values[name]


async def test_the_owner_types_the_pin_and_the_appliance_proves_it(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    menu = await hass.config_entries.flow.async_configure(flow_id(hass))
    assert (menu["step_id"], menu["menu_options"]) == ("confirm_exchange", ["pin", "reject"])
    assert placeholder(menu, "name") == "Kitchen oven"
    form = await hass.config_entries.flow.async_configure(flow_id(hass), {"next_step_id": "pin"})
    assert (form["type"], form["step_id"], form["errors"]) == (FlowResultType.FORM, "exchange_pin", {})

    waiting = await hass.config_entries.flow.async_configure(flow_id(hass), {"pin": PIN})
    assert (waiting["type"], waiting["step_id"]) == (FlowResultType.SHOW_PROGRESS, "exchange")
    assert waiting["progress_action"] == "exchange"
    assert not hass.config_entries.async_entries(DOMAIN)[0].subentries  # nothing before the proof
    assert PIN not in str(runtime.service.policy.export())

    paired = await oven.exchange()
    assert isinstance(paired, Paired)
    assert paired.ca == runtime.service.ca.certificate
    paired.certificate.verify_directly_issued_by(runtime.service.ca.certificate)
    done = await after_the_wait(hass, waiting["flow_id"])
    assert (done["type"], done["reason"]) == (FlowResultType.ABORT, "paired")
    device = device_for(hass, "oven")
    assert device is not None
    assert (device.name, device.model, device.serial_number) == ("Kitchen oven", "OV-200", "SN-42")
    assert entity_state(hass, "_oven_certificate_status") == "valid"
    assert entity_state(hass, "_pending_requests") == "0"


async def test_a_mistyped_pin_fails_the_proof_and_the_right_one_pairs(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    waiting = await type_pin(hass, "482931")  # two digits swapped: the hub cannot tell until the exchange
    assert waiting["type"] is FlowResultType.SHOW_PROGRESS
    with pytest.raises(PairingProofFailed):
        await oven.exchange()
    form = await after_the_wait(hass, waiting["flow_id"])
    assert (form["step_id"], form["errors"]) == ("exchange_pin", {"pin": "exchange_failed"})
    assert placeholder(form, "attempts_left") == str(OWNER_PIN_ATTEMPTS - 1)
    assert len(runtime.service.ledger) == 0

    waiting = await type_pin(hass, PIN, from_menu=False)
    assert isinstance(await oven.exchange(), Paired)
    assert (await after_the_wait(hass, waiting["flow_id"]))["reason"] == "paired"


async def test_three_pins_the_appliance_cannot_prove_lock_it(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    result = await type_pin(hass, "111111")
    for attempt in range(OWNER_PIN_ATTEMPTS):
        assert result["type"] is FlowResultType.SHOW_PROGRESS
        with pytest.raises(PairingProofFailed):
            await oven.exchange()
        result = await after_the_wait(hass, result["flow_id"])
        if attempt < OWNER_PIN_ATTEMPTS - 1:
            assert result["errors"] == {"pin": "exchange_failed"}
            result = await type_pin(hass, "111111", from_menu=False)
    assert (result["type"], result["reason"]) == (FlowResultType.ABORT, "locked_out")
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    with pytest.raises(LockedOut):
        await oven.exchange()
    assert len(runtime.service.ledger) == 0


async def test_an_appliance_that_does_not_come_back_in_time_pairs_when_it_does(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    waiting = await type_pin(hass, PIN)
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=EXCHANGE_WAIT + 1))
    done = await after_the_wait(hass, waiting["flow_id"])
    assert (done["type"], done["reason"]) == (FlowResultType.ABORT, "exchange_pending")
    await hass.async_block_till_done()
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []  # it waits for the oven now
    assert entity_state(hass, "_pending_requests") == "1"

    assert isinstance(await oven.exchange(), Paired)  # back later: the PIN typed stayed
    assert device_for(hass, "oven") is not None
    assert entity_state(hass, "_oven_certificate_status") == "valid"


async def test_a_dialog_closed_while_waiting_brings_the_card_back_only_if_the_proof_fails(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    waiting = await type_pin(hass, "482931")
    hass.config_entries.flow.async_abort(waiting["flow_id"])  # the owner closed it
    await hass.async_block_till_done()
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    with pytest.raises(PairingProofFailed):
        await oven.exchange()
    await hass.async_block_till_done()
    menu = await hass.config_entries.flow.async_configure(flow_id(hass))  # its card is back
    assert menu["step_id"] == "confirm_exchange"


async def test_another_key_waiting_behind_it_gets_its_card_once_the_dialog_ends(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    other = Oven(hass, runtime)  # the same id, another key (a stranger, or the oven after a reset)
    assert isinstance(await other.exchange(), Pending)
    waiting = await type_pin(hass, PIN)
    assert isinstance(await oven.exchange(), Paired)
    assert (await after_the_wait(hass, waiting["flow_id"]))["reason"] == "paired"
    await hass.async_block_till_done()
    menu = await hass.config_entries.flow.async_configure(flow_id(hass))
    assert (menu["step_id"], menu["menu_options"]) == ("confirm_paired", ["pin", "reject"])


async def test_rejecting_it_refuses_its_next_exchange(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    result = await hass.config_entries.flow.async_configure(flow_id(hass), {"next_step_id": "reject"})
    assert result["reason"] == "rejected"
    with pytest.raises(Rejected):
        await oven.exchange()
    assert len(runtime.service.ledger) == 0


async def test_a_preregistered_appliance_pairs_through_the_exchange_unattended(
    hass: HomeAssistant, runtime: EstRuntime
) -> None:
    await runtime.decisions.async_preregister("oven", PIN, "Kitchen oven")
    await hass.async_block_till_done()
    assert isinstance(await Oven(hass, runtime).exchange(), Paired)
    assert hass.config_entries.flow.async_progress_by_handler(DOMAIN) == []
    assert entity_state(hass, "_oven_certificate_status") == "valid"


async def test_a_busy_srp_worker_leaves_the_pin_form_to_try_again(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    runtime.service.srp.queue = 0  # every step is refused as if the worker had 32 waiting
    form = await type_pin(hass, PIN)
    assert (form["step_id"], form["errors"]) == ("exchange_pin", {"base": "pin_check_unavailable"})
    assert "busy" in placeholder(form, "reason")
    runtime.service.srp.queue = 32
    waiting = await type_pin(hass, PIN, from_menu=False)
    assert waiting["type"] is FlowResultType.SHOW_PROGRESS


@pytest.mark.parametrize(("pin", "reason"), [("   ", "a PIN is needed"), ("4" * 129, "longer than 128")])
async def test_a_pin_no_verifier_can_be_made_of_asks_again(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven, pin: str, reason: str
) -> None:
    """Blank, or longer than any PIN: the form says why; nothing is stored, the appliance still waits."""
    form = await type_pin(hass, pin)
    assert (form["type"], form["step_id"], form["errors"]) == (
        FlowResultType.FORM,
        "exchange_pin",
        {"pin": "pin_unusable"},
    )
    assert reason in placeholder(form, "reason")
    (pending,) = runtime.service.policy.pending_requests()
    assert pending.verifier is None
    assert isinstance(await oven.exchange(), Pending)


async def test_a_request_that_goes_while_its_proof_is_awaited_ends_the_dialog(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    """Pre-registered meanwhile (by another owner, say): the wait ends, and says the request is gone."""
    waiting = await type_pin(hass, PIN)
    assert waiting["type"] is FlowResultType.SHOW_PROGRESS
    await runtime.decisions.async_preregister("oven", PIN, "Kitchen oven")
    done = await after_the_wait(hass, waiting["flow_id"])
    assert (done["type"], done["reason"]) == (FlowResultType.ABORT, "request_gone")
    assert isinstance(await oven.exchange(), Paired)  # the pre-registration pairs it


async def test_a_request_that_goes_while_the_typed_pin_is_stored_ends_the_dialog(
    hass: HomeAssistant, runtime: EstRuntime, oven: Oven
) -> None:
    """It goes while the PIN's verifier is made: nothing is stored, and the dialog says it is gone."""
    (pending,) = runtime.service.policy.pending_requests()
    await hass.config_entries.flow.async_configure(flow_id(hass), {"next_step_id": "pin"})
    with verifiers_held(runtime) as held:
        typed = hass.async_create_task(type_pin(hass, PIN, from_menu=False))
        await held.making.wait()
        runtime.service.policy.withdraw(pending.request_id)
        held.released.set()
        result = await typed
    assert (result["type"], result["reason"]) == (FlowResultType.ABORT, "request_gone")
    assert runtime.service.policy.pending_requests() == []
    assert isinstance(await oven.exchange(), Pending)  # it asks anew
