"""Config, reconfigure, options and pre-registration flows: each error, then a successful retry."""

from __future__ import annotations

from collections.abc import Mapping
import contextlib
from datetime import UTC, datetime, timedelta
import socket
from typing import Any
from unittest.mock import patch

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_INTEGRATION_DISCOVERY,
    SOURCE_USER,
    ConfigEntryState,
)
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.est_pairing.config_flow import _literal
from custom_components.est_pairing.const import (
    CONF_APPLIANCE_ID,
    CONF_CA_NAME,
    CONF_MANUFACTURER_CAS,
    CONF_NAME,
    CONF_PIN,
    CONF_PORT,
    CONF_RENEWAL_DAYS,
    CONF_VALIDITY_DAYS,
    DEFAULT_PORT,
    DOMAIN,
    SUBENTRY_APPLIANCE,
)
from custom_components.est_pairing.decisions import pending_discovery_data
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.csr import ApplianceDetails
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, Pending, build_csr
from tests.est import forge

from . import ENTRY_ID, ask, placeholders, verifiers_held


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def suggested(result: Mapping[str, Any], key: str) -> object:
    for marker in result["data_schema"].schema:
        if marker == key:
            return (marker.description or {}).get("suggested_value")
    raise KeyError(key)


# --- creating the hub ------------------------------------------------------------------------------


async def test_user_flow_creates_the_hub(hass: HomeAssistant) -> None:
    hass.config.location_name = "Smith Home"
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert suggested(result, CONF_CA_NAME) == "Smith Home"

    port = free_port()
    with patch("custom_components.est_pairing.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_CA_NAME: " Smith ", CONF_PORT: port}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Smith Household CA"
    assert result["data"] == {CONF_CA_NAME: "Smith", CONF_PORT: port}
    assert result["result"].unique_id == DOMAIN


async def test_port_in_use_then_a_free_one(hass: HomeAssistant, taken_port: int) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_CA_NAME: "Home", CONF_PORT: taken_port}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_PORT: "port_in_use"}
    offered = suggested(result, CONF_PORT)
    assert isinstance(offered, int)
    assert offered != taken_port

    with patch("custom_components.est_pairing.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_CA_NAME: "Home", CONF_PORT: offered}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_PORT] == offered


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("   ", "name_blank"),
        ("x" * 52, "name_too_long"),  # "<name> Household CA" is a CN: at most 64 bytes of UTF-8
        ("日" * 18, "name_too_long"),  # 18 characters, 54 bytes
    ],
)
async def test_household_name_errors_then_success(hass: HomeAssistant, name: str, error: str) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    port = free_port()
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_CA_NAME: name, CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_CA_NAME: error}
    assert result["description_placeholders"] == {"max_length": "51"}

    with patch("custom_components.est_pairing.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_CA_NAME: "x" * 51, CONF_PORT: port}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "x" * 51 + " Household CA"


async def test_a_pasted_tab_in_the_household_name_becomes_a_space(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    with patch("custom_components.est_pairing.async_setup_entry", return_value=True):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_CA_NAME: " Sea\tView\r\n", CONF_PORT: free_port()}
        )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_CA_NAME] == "Sea View"
    assert result["title"] == "Sea View Household CA"


async def test_a_long_home_name_is_offered_shortened(hass: HomeAssistant) -> None:
    hass.config.location_name = "Familie Müller-Lüdenscheidt, Ferienhaus am Seeufer 12"  # 55 bytes
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert suggested(result, CONF_CA_NAME) == "Familie Müller-Lüdenscheidt, Ferienhaus am Seeufe"  # 51


async def test_default_port_taken_offers_a_free_one(hass: HomeAssistant) -> None:
    with socket.socket() as holder:
        with contextlib.suppress(OSError):  # if something else holds it already, it is taken all the same
            holder.bind(("", DEFAULT_PORT))
            holder.listen()
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    offered = suggested(result, CONF_PORT)
    assert offered != DEFAULT_PORT
    assert isinstance(offered, int)


async def test_only_one_hub(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    mock_config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


# --- reconfigure ------------------------------------------------------------------------------------


async def test_reconfigure_moves_the_listener(
    hass: HomeAssistant, init_integration: MockConfigEntry, taken_port: int
) -> None:
    result = await init_integration.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PORT: taken_port})
    assert result["errors"] == {CONF_PORT: "port_in_use"}  # "...; a free one is suggested"
    port = suggested(result, CONF_PORT)
    assert isinstance(port, int)
    assert port != taken_port

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PORT: port})
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert init_integration.data[CONF_PORT] == port
    runtime: EstRuntime = init_integration.runtime_data
    assert runtime.service.port == port


async def test_reconfigure_an_entry_that_could_not_start(
    hass: HomeAssistant, entry_on_taken_port: MockConfigEntry
) -> None:
    entry = entry_on_taken_port
    result = await entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PORT: free_port()})
    await hass.async_block_till_done()
    assert result["reason"] == "reconfigure_successful"
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_to_the_port_it_already_holds(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    port = free_port()
    entry = MockConfigEntry(domain=DOMAIN, unique_id=DOMAIN, data={**mock_config_entry.data, CONF_PORT: port})
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    result = await entry.start_reconfigure_flow(hass)
    assert suggested(result, CONF_PORT) == port
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_PORT: port})
    assert result["reason"] == "reconfigure_successful"
    assert entry.state is ConfigEntryState.LOADED


# --- options ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "errors"),
    [
        ({CONF_VALIDITY_DAYS: 30, CONF_RENEWAL_DAYS: 30}, {CONF_RENEWAL_DAYS: "renewal_too_long"}),
        ({CONF_MANUFACTURER_CAS: "not a certificate"}, {CONF_MANUFACTURER_CAS: "invalid_pem"}),
        ({CONF_MANUFACTURER_CAS: "LEAF"}, {CONF_MANUFACTURER_CAS: "not_a_ca"}),
        ({CONF_MANUFACTURER_CAS: "NO_CONSTRAINTS"}, {CONF_MANUFACTURER_CAS: "not_a_ca"}),
    ],
)
async def test_options_errors_then_success(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    options: dict[str, object],
    errors: dict[str, str],
    leaf_pem: str,
    no_constraints_pem: str,
) -> None:
    manufacturer = HouseholdCA.create("Acme Factory")
    placeholders = {"LEAF": leaf_pem, "NO_CONSTRAINTS": no_constraints_pem}
    wrong = {CONF_VALIDITY_DAYS: 365, CONF_RENEWAL_DAYS: 30, CONF_MANUFACTURER_CAS: ""} | options
    wrong[CONF_MANUFACTURER_CAS] = placeholders.get(
        str(wrong[CONF_MANUFACTURER_CAS]), wrong[CONF_MANUFACTURER_CAS]
    )

    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    assert result["step_id"] == "init"
    assert suggested(result, CONF_VALIDITY_DAYS) == 365
    result = await hass.config_entries.options.async_configure(result["flow_id"], wrong)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors

    good = {
        CONF_VALIDITY_DAYS: 90,
        CONF_RENEWAL_DAYS: 10,
        CONF_MANUFACTURER_CAS: manufacturer.certificate_pem.decode(),
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], good)
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    pasted = str(good[CONF_MANUFACTURER_CAS])
    assert init_integration.options == good | {CONF_MANUFACTURER_CAS: pasted.strip()}
    runtime: EstRuntime = init_integration.runtime_data  # reloaded with the new settings
    assert runtime.settings.validity_days == 90
    assert runtime.service.config.manufacturer_cas == [manufacturer.certificate]


@pytest.fixture(scope="module")
def leaf_pem() -> str:
    ca = HouseholdCA.create("Leaf maker")
    names = ListenerNames.from_hosts(["leaf.local"])
    return ListenerIdentity.issue(ca, names, datetime.now(UTC)).to_pem()[0].decode()


@pytest.fixture(scope="module")
def no_constraints_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


# --- pre-registering an appliance (config subentry flow) ---------------------------------------------


async def test_preregister_flow_errors_then_success(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    result = await hass.config_entries.subentries.async_init(
        (init_integration.entry_id, SUBENTRY_APPLIANCE), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["description_placeholders"] == {"min_pin_length": "6", "max_pin_length": "128"}
    for user_input, errors in (
        ({CONF_APPLIANCE_ID: "bad id!", CONF_PIN: "123456"}, {CONF_APPLIANCE_ID: "invalid_appliance_id"}),
        ({CONF_APPLIANCE_ID: "oven.local", CONF_PIN: "123456"}, {CONF_APPLIANCE_ID: "invalid_appliance_id"}),
        ({CONF_APPLIANCE_ID: "oven", CONF_PIN: "123"}, {CONF_PIN: "pin_too_short"}),
        ({CONF_APPLIANCE_ID: "oven", CONF_PIN: "1" * 129}, {CONF_PIN: "pin_too_long"}),
    ):
        result = await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
        assert result["errors"] == errors
        assert suggested(result, CONF_PIN) is None  # a PIN is never echoed back

    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_APPLIANCE_ID: "oven", CONF_PIN: "123456", CONF_NAME: "Kitchen oven"}
    )
    await hass.async_block_till_done()
    assert result["type"] is FlowResultType.CREATE_ENTRY
    (subentry,) = init_integration.subentries.values()
    assert subentry.title == "Kitchen oven"
    assert subentry.unique_id == "oven"
    runtime: EstRuntime = init_integration.runtime_data
    registration = runtime.service.policy.registration("oven")
    assert registration is not None
    assert registration.preregistered
    assert registration.details.name == "Kitchen oven"

    result = await hass.config_entries.subentries.async_init(
        (init_integration.entry_id, SUBENTRY_APPLIANCE), context={"source": SOURCE_USER}
    )
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_APPLIANCE_ID: "oven", CONF_PIN: "654321"}
    )
    assert result["errors"] == {CONF_APPLIANCE_ID: "already_paired"}
    result = await hass.config_entries.subentries.async_configure(
        result["flow_id"], {CONF_APPLIANCE_ID: "Oven", CONF_PIN: "654321"}
    )
    assert result["errors"] == {CONF_APPLIANCE_ID: "case_twin"}
    assert runtime.service.policy.registration("Oven") is None


def test_a_flow_result_that_lacks_a_placeholder_its_strings_use_is_caught() -> None:
    """What the autouse check (conftest) finds: the strings the frontend shows for a result, each filled."""
    pre_register = placeholders.TRANSLATIONS["config_subentries"][SUBENTRY_APPLIANCE]
    form = FlowResult(
        flow_id="1",
        handler=(ENTRY_ID, SUBENTRY_APPLIANCE),
        type=FlowResultType.FORM,
        step_id="user",
        errors={CONF_PIN: "pin_too_short"},
        description_placeholders={"max_pin_length": "128"},
    )
    assert placeholders.missing(pre_register, form) == {
        "step.user.data_description.pin": {"min_pin_length"},
        "error.pin_too_short": {"min_pin_length"},
    }
    approved = FlowResult(
        flow_id="2",
        handler=DOMAIN,
        type=FlowResultType.ABORT,
        reason="approved",
        description_placeholders=None,
    )
    assert placeholders.missing(placeholders.TRANSLATIONS["config"], approved) == {"abort.approved": {"name"}}
    approved["description_placeholders"] = {"name": "Oven"}
    assert placeholders.missing(placeholders.TRANSLATIONS["config"], approved) == {}


async def test_preregister_flow_with_a_busy_srp_worker_stores_nothing_and_can_retry(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    runtime: EstRuntime = init_integration.runtime_data
    runtime.service.srp.queue = 0  # every step is refused as if the worker had 32 waiting
    result = await hass.config_entries.subentries.async_init(
        (init_integration.entry_id, SUBENTRY_APPLIANCE), context={"source": SOURCE_USER}
    )
    oven = {CONF_APPLIANCE_ID: "oven", CONF_PIN: "123456"}
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], oven)
    assert result["errors"] == {"base": "pin_check_unavailable"}
    assert "busy" in (result["description_placeholders"] or {})["reason"]
    assert runtime.service.policy.registration("oven") is None
    runtime.service.srp.queue = 32
    result = await hass.config_entries.subentries.async_configure(result["flow_id"], oven)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_an_appliance_paired_while_its_pre_registration_is_stored_is_already_paired(
    hass: HomeAssistant, init_integration: MockConfigEntry, appliance_client: EstClient
) -> None:
    """The owner approves its card while the pre-registration's verifier is being made."""
    runtime: EstRuntime = init_integration.runtime_data
    assert isinstance(await ask(hass, appliance_client, ec.generate_private_key(ec.SECP256R1())), Pending)
    (pending,) = runtime.service.policy.pending_requests()
    result = await hass.config_entries.subentries.async_init(
        (init_integration.entry_id, SUBENTRY_APPLIANCE), context={"source": SOURCE_USER}
    )
    with verifiers_held(runtime) as held:
        submitted = hass.async_create_task(
            hass.config_entries.subentries.async_configure(
                result["flow_id"], {CONF_APPLIANCE_ID: "oven", CONF_PIN: "123456"}
            )
        )
        await held.making.wait()
        await runtime.decisions.async_approve(pending.request_id, pin=None)  # fingerprints compared
        held.released.set()
        result = await submitted
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_APPLIANCE_ID: "already_paired"}
    registration = runtime.service.policy.registration("oven")
    assert registration is not None
    assert not registration.preregistered


async def test_preregister_flow_needs_a_running_hub(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    await hass.config_entries.async_unload(init_integration.entry_id)
    result = await hass.config_entries.subentries.async_init(
        (init_integration.entry_id, SUBENTRY_APPLIANCE), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_running"


async def test_options_without_manufacturer_cas(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_VALIDITY_DAYS: 30, CONF_RENEWAL_DAYS: 7}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert init_integration.options[CONF_MANUFACTURER_CAS] == ""


# --- discovery flows whose hub is gone or whose request does not fit ---------------------------------

DISCOVERY = {
    "request_id": "0123456789abcdef0123",
    "identity": "id:oven",
    "appliance_id": "oven",
    "name": "Oven",
}


async def test_a_discovery_without_a_running_hub_has_nothing_to_show(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_INTEGRATION_DISCOVERY}, data=DISCOVERY
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_running"


async def test_ignore_without_a_running_hub(hass: HomeAssistant) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_IGNORE}, data={"unique_id": "id:oven", "title": "Oven"}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    flow = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_INTEGRATION_DISCOVERY}, data=DISCOVERY
    )
    assert flow["reason"] == "already_configured"


async def test_the_dialog_shows_the_request_not_what_the_discovery_data_claims(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """The request itself, looked up when shown, decides what the owner sees and may choose."""
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
    await appliance_client.simpleenroll(csr, username="oven", password="")
    await hass.async_block_till_done()
    (pending,) = runtime.service.policy.pending_requests()
    for flow in hass.config_entries.flow.async_progress_by_handler(DOMAIN):
        hass.config_entries.flow.async_abort(flow["flow_id"])
    forged = pending_discovery_data(pending) | {"kind": "pin", "key_fingerprint": "00" * 32, "model": "X"}
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_INTEGRATION_DISCOVERY}, data=forged
    )
    assert result["menu_options"] == ["fingerprint", "reject"]  # it sent no PIN
    shown = result["description_placeholders"]
    assert shown is not None
    assert shown["fingerprint"].replace(" ", "").lower() == pending.key_fingerprint
    assert shown["model"] == "-"
    runtime.service.policy.reject(pending.request_id)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "fingerprint"}
    )
    assert result["reason"] == "request_gone"
    assert runtime.service.policy.registration("oven") is None


NAME = x509.ObjectIdentifier("2.5.4.41")  # the appliance's own name for itself
HOSTILE = ApplianceDetails(
    name="Oven** ![](http://10.9.9.9/t.png) [Verified](http://x/) **",
    model="<img src=x onerror=alert(1)>",
    manufacturer="Acme\n\n# Verified by Home Assistant",
    serial_number="_1_ `2` www.example.com",
)


async def test_what_the_appliance_claims_is_shown_as_text(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """The dialogs render markdown: an appliance's text must not become links, images, HTML or emphasis."""
    # A UTF8String serialNumber (cryptography writes PrintableStrings, which cannot hold this text).
    fields = (
        (NAME, HOSTILE.name),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, HOSTILE.model),
        (NameOID.ORGANIZATION_NAME, HOSTILE.manufacturer),
        (NameOID.SERIAL_NUMBER, HOSTILE.serial_number),
    )
    said = [(oid, text) for oid, text in fields if text]
    csr = x509.load_der_x509_csr(forge.with_text_attributes(forge.new_key(), "oven", said))
    await appliance_client.simpleenroll(csr, username="oven", password="")
    await hass.async_block_till_done()
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["title_placeholders"] == {"name": HOSTILE.name}  # a card title is plain text
    menu = await hass.config_entries.flow.async_configure(flow["flow_id"])
    form = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "fingerprint"})
    for result in (menu, form):
        shown = result["description_placeholders"]
        assert shown is not None
        assert shown["name"] == (
            r"Oven\*\* \!\[\]\(http\:\/\/10\.9\.9\.9\/t\.png\) \[Verified\]\(http\:\/\/x\/\) \*\*"
        )
        assert shown["model"] == r"\<img src\=x onerror\=alert\(1\)\>"
        assert shown["manufacturer"] == r"Acme\# Verified by Home Assistant"  # one line, no heading
        assert shown["serial_number"] == r"\_1\_ \`2\` www\.example\.com"
        assert shown["appliance_id"] == "oven"
        # What the integration formats itself is shown as it is (fingerprints sit in code spans).
        (pending,) = runtime.service.policy.pending_requests()
        assert shown["fingerprint"] == format_fingerprint(pending.key_fingerprint)
        assert shown["factory_fingerprint"] == "-"
        assert shown["key_type"] == "EC P-256"
        assert shown["address"] == "127.0.0.1"


def test_a_factory_issuer_is_shown_as_text() -> None:
    assert _literal("CN=Acme Root,O=[Trusted](http://10.9.9.9/)\u202e") == (
        r"CN\=Acme Root\,O\=\[Trusted\]\(http\:\/\/10\.9\.9\.9\/\)"
    )


async def test_an_abandoned_dialog_does_not_block_a_new_one(hass: HomeAssistant) -> None:
    abandoned = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["flow_id"] != abandoned["flow_id"]
