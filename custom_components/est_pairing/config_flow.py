"""Config flows: create the household CA hub, approve discovered appliances, options, pre-registration.

Longer than the other modules: Home Assistant looks for the config flow here, and its options and
subentry flows sit beside it, as in Home Assistant's own integrations. The owner's approval dialogs
are most of it; what they decide is carried out by :mod:`.decisions`.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import TYPE_CHECKING, Any

from cryptography import x509
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigEntryState,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.core import callback
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.helpers.typing import DiscoveryInfoType
import voluptuous as vol

from .const import (
    CONF_APPLIANCE_ID,
    CONF_CA_NAME,
    CONF_MANUFACTURER_CAS,
    CONF_NAME,
    CONF_PIN,
    CONF_PORT,
    CONF_RENEWAL_DAYS,
    CONF_VALIDITY_DAYS,
    DEFAULT_PORT,
    DEFAULT_RENEWAL_DAYS,
    DEFAULT_VALIDITY_DAYS,
    DOMAIN,
    MIN_PIN_LENGTH,
    STEP_EXCHANGE,
    STEP_EXCHANGE_DONE,
    SUBENTRY_APPLIANCE,
)
from .decisions import OwnerReview
from .est.ca import HOUSEHOLD_CA_SUFFIX, MAX_COMMON_NAME_BYTES, household_ca_name, household_name
from .est.csr import ApplianceDetails, displayable
from .est.errors import (
    Busy,
    CAFailure,
    LockedOut,
    MalformedRequest,
    NameTaken,
    NotAllowed,
    PendingRequestGone,
    WrongPin,
)
from .est.fingerprints import format_fingerprint
from .est.issuance import check_appliance_id
from .est.limits import EXCHANGE_WAIT, MAX_SECRET_LENGTH
from .est.policy import ExchangeFailure, ExchangeOutcome, PinGiven, Registration
from .exceptions import AlreadyPaired
from .runtime import hub_runtime

if TYPE_CHECKING:
    from .runtime import EstConfigEntry, EstRuntime

# CommonMark: backslash-escaped ASCII punctuation shows as itself ("\<img>" is text, not HTML)
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")

# The household's name, as the set-up form takes it, is no longer than the CA's name has room for.
MAX_HOUSEHOLD_NAME_BYTES = MAX_COMMON_NAME_BYTES - len(HOUSEHOLD_CA_SUFFIX)
CONF_FINGERPRINTS_MATCH = "fingerprints_match"
CONF_USE_NEW_DETAILS = "use_new_details"
SHORT_FINGERPRINT_GROUPS = 4
PORT_SELECTOR = NumberSelector(NumberSelectorConfig(min=1, max=65535, mode=NumberSelectorMode.BOX))
USER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_CA_NAME): TextSelector(),
        vol.Required(CONF_PORT): PORT_SELECTOR,
    }
)
RECONFIGURE_SCHEMA = vol.Schema({vol.Required(CONF_PORT): PORT_SELECTOR})
PIN_SCHEMA = vol.Schema(
    {vol.Required(CONF_PIN): TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))}
)
FINGERPRINT_SCHEMA = vol.Schema({vol.Required(CONF_FINGERPRINTS_MATCH, default=False): BooleanSelector()})
NEW_DETAILS_SCHEMA = vol.Schema({vol.Required(CONF_USE_NEW_DETAILS, default=False): BooleanSelector()})
OPTIONS_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_VALIDITY_DAYS): NumberSelector(
            NumberSelectorConfig(min=1, max=3650, mode=NumberSelectorMode.BOX, unit_of_measurement="d")
        ),
        vol.Required(CONF_RENEWAL_DAYS): NumberSelector(
            NumberSelectorConfig(min=1, max=365, mode=NumberSelectorMode.BOX, unit_of_measurement="d")
        ),
        vol.Optional(CONF_MANUFACTURER_CAS, default=""): TextSelector(TextSelectorConfig(multiline=True)),
    }
)
APPLIANCE_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_APPLIANCE_ID): TextSelector(),
        vol.Required(CONF_PIN): TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD)),
        vol.Optional(CONF_NAME): TextSelector(),
    }
)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _a_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        port: int = probe.getsockname()[1]
    return port


class EstPairingConfigFlow(ConfigFlow, domain=DOMAIN):
    """Create the hub; approve (or reject) an appliance that asks to enroll."""

    VERSION = 1

    def __init__(self) -> None:
        self._discovery: dict[str, Any] = {}
        # After the owner typed the PIN of an appliance of the PIN exchange: the wait for its next
        # exchange, what the dialog showed, and the attempts left after one that disproved the PIN.
        self._proof: asyncio.Task[ExchangeOutcome | TimeoutError] | None = None
        self._proof_placeholders: dict[str, str] = {}
        self._disproved: int | None = None

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: EstConfigEntry) -> EstOptionsFlow:
        """Certificate lifetime, renewal window, manufacturer CAs."""
        return EstOptionsFlow()

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """Appliances can be pre-registered from the hub."""
        return {SUBENTRY_APPLIANCE: ApplianceSubentryFlow}

    # --- the hub ------------------------------------------------------------------------------------

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Name the household CA and choose the EST port (checked before anything is created)."""
        await self.async_set_unique_id(DOMAIN, raise_on_progress=False)  # a closed dialog may linger
        self._abort_if_unique_id_configured()
        errors: dict[str, str] = {}
        if user_input is not None:
            name = household_name(user_input[CONF_CA_NAME])  # a pasted line break as a space
            port = int(user_input[CONF_PORT])
            data: dict[str, Any] = {CONF_CA_NAME: name, CONF_PORT: port}
            suggested = dict(data)
            if not name:
                errors[CONF_CA_NAME] = "name_blank"
            elif len(name.encode()) > MAX_HOUSEHOLD_NAME_BYTES:
                errors[CONF_CA_NAME] = "name_too_long"
            if not await self.hass.async_add_executor_job(_port_free, port):
                errors[CONF_PORT] = "port_in_use"
                suggested[CONF_PORT] = await self.hass.async_add_executor_job(_a_free_port)
            if not errors:
                return self.async_create_entry(title=household_ca_name(name), data=data)
        else:
            port = DEFAULT_PORT
            if not await self.hass.async_add_executor_job(_port_free, port):
                port = await self.hass.async_add_executor_job(_a_free_port)
            # A home name too long for the CA's name is offered shortened.
            suggested = {
                CONF_CA_NAME: household_name(self.hass.config.location_name, MAX_HOUSEHOLD_NAME_BYTES),
                CONF_PORT: port,
            }
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(USER_SCHEMA, suggested),
            errors=errors,
            description_placeholders={"max_length": str(MAX_HOUSEHOLD_NAME_BYTES)},
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Move the EST listener to another port."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        suggested_port = entry.data[CONF_PORT]
        if user_input is not None:
            port = int(user_input[CONF_PORT])
            if port == entry.data[CONF_PORT] or await self.hass.async_add_executor_job(_port_free, port):
                self.hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: port})
                if entry.state is not ConfigEntryState.LOADED:  # loaded entries reload on update
                    self.hass.config_entries.async_schedule_reload(entry.entry_id)
                return self.async_abort(reason="reconfigure_successful")
            errors[CONF_PORT] = "port_in_use"  # its text promises a free port: offer one, as set-up does
            suggested_port = await self.hass.async_add_executor_job(_a_free_port)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(RECONFIGURE_SCHEMA, {CONF_PORT: suggested_port}),
            errors=errors,
        )

    # --- an appliance asks to enroll -------------------------------------------------------------------

    async def async_step_integration_discovery(self, discovery_info: DiscoveryInfoType) -> ConfigFlowResult:
        """One flow per appliance identity; the owner decides in the confirm step."""
        await self.async_set_unique_id(discovery_info["identity"])
        self._abort_if_unique_id_configured()
        self._discovery = dict(discovery_info)  # a duplicate or ignored card ends above, changing nothing
        name = displayable(discovery_info["name"]) or discovery_info["appliance_id"]
        self.context["title_placeholders"] = {"name": name}  # a card title: plain text, not markdown
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show who asks, as things stand now; the owner types the PIN, compares fingerprints, or rejects.

        A new key for an appliance that is paired already gets its own page, which shows the key it
        has and the details its device shows beside the request's; the ways to approve it are those
        the appliance was paired with, and none if the request does not bring that proof.
        """
        shown = self._review()
        if not isinstance(shown, OwnerReview):
            return shown
        review = shown.review
        options = [*(c.value for c in review.confirmations), "reject"]
        placeholders = self._placeholders(shown)
        if review.paired is not None and review.confirmations:
            return self.async_show_menu(
                step_id="confirm_paired", menu_options=options, description_placeholders=placeholders
            )
        if review.paired is not None:
            return self.async_show_menu(
                step_id="confirm_refused", menu_options=["reject"], description_placeholders=placeholders
            )
        if shown.device is not None:  # revoked, its device kept: it asks again
            return self.async_show_menu(
                step_id="confirm_again", menu_options=options, description_placeholders=placeholders
            )
        if shown.exchange:  # it sent no PIN: it proves the one the owner types in its next exchange
            return self.async_show_menu(
                step_id="confirm_exchange", menu_options=options, description_placeholders=placeholders
            )
        return self.async_show_menu(
            step_id="confirm", menu_options=options, description_placeholders=placeholders
        )

    # The other pages of the confirm step: shown again (a refresh), each is worked out anew.
    async_step_confirm_again = async_step_confirm_paired = async_step_confirm_refused = async_step_confirm
    async_step_confirm_exchange = async_step_confirm

    async def async_step_pin(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The PIN printed on the appliance must equal the one it sent (and the one it was paired with).

        An appliance of the PIN exchange sent none: its page says that its next exchange proves it.
        """
        return await self._confirm_step("pin", PIN_SCHEMA, user_input)

    async_step_exchange_pin = async_step_pin

    async def async_step_exchange(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The owner typed the PIN: wait for the appliance's next PIN exchange to prove it (or not)."""
        if self._proof is None or self._proof.done():
            return self.async_show_progress_done(next_step_id=STEP_EXCHANGE_DONE)
        return self.async_show_progress(
            step_id=STEP_EXCHANGE,
            progress_action=STEP_EXCHANGE,
            progress_task=self._proof,
            description_placeholders=self._proof_placeholders,
        )

    async def async_step_exchange_done(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Paired; the PIN form again with why; locked out; or the appliance pairs when it is back."""
        proof, self._proof = self._proof, None
        placeholders = self._proof_placeholders
        outcome = None if proof is None else proof.result()  # a TimeoutError is returned, not raised
        if isinstance(outcome, ExchangeFailure) and outcome.attempts_left:
            self._disproved = outcome.attempts_left
            return await self.async_step_pin()
        if isinstance(outcome, TimeoutError):  # the PIN's verifier stays: its next exchange proves it
            return self.async_abort(reason="exchange_pending", description_placeholders=placeholders)
        if isinstance(outcome, Registration):
            return self.async_abort(reason="paired", description_placeholders=placeholders)
        if isinstance(outcome, ExchangeFailure):  # the last attempt: the request is gone
            return self.async_abort(reason="locked_out")
        return self.async_abort(reason="request_gone")

    async def async_step_fingerprint(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The owner confirms the key fingerprint matches the one the appliance shows."""
        return await self._confirm_step("fingerprint", FINGERPRINT_SCHEMA, user_input)

    async def _confirm_step(
        self, step_id: str, schema: vol.Schema, user_input: dict[str, Any] | None
    ) -> ConfigFlowResult:
        shown = self._review()
        if not isinstance(shown, OwnerReview):
            return shown
        errors: dict[str, str] = {}
        placeholders = self._placeholders(shown)
        use_new_details = bool((user_input or {}).get(CONF_USE_NEW_DETAILS))
        try:
            if user_input is not None and step_id == "pin":
                return await self._approve(shown, pin=user_input[CONF_PIN], use_new_details=use_new_details)
            if user_input is not None and user_input[CONF_FINGERPRINTS_MATCH]:
                return await self._approve(shown, pin=None, use_new_details=use_new_details)
            if user_input is not None:
                errors["base"] = "confirm_match"
        except WrongPin as err:
            errors[CONF_PIN] = "wrong_pin"
            placeholders["attempts_left"] = str(err.attempts_left)
        except MalformedRequest as err:  # blank, or too long to make a verifier of: nothing was stored
            errors[CONF_PIN] = "pin_unusable"
            placeholders["reason"] = str(err)
        except (Busy, CAFailure) as err:  # the SRP worker, busy or failing: nothing was decided
            errors["base"] = "pin_check_unavailable"
            placeholders["reason"] = str(err)
        if user_input is None and self._disproved is not None:  # back from an exchange that failed
            errors[CONF_PIN] = "exchange_failed"
            placeholders["attempts_left"] = str(self._disproved)
            self._disproved = None
        if shown.new_details:  # the device keeps its details unless the owner ticks this
            schema = schema.extend(NEW_DETAILS_SCHEMA.schema)
        if step_id == "pin" and shown.exchange:
            step_id = "exchange_pin"
        return self.async_show_form(
            step_id=step_id, data_schema=schema, errors=errors, description_placeholders=placeholders
        )

    async def async_step_reject(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Refuse: the appliance's next retry gets 403."""
        shown = self._review()
        if not isinstance(shown, OwnerReview):
            return shown
        runtime = hub_runtime(self.hass)
        assert runtime is not None  # noqa: S101 - _review found it
        runtime.decisions.reject(self._discovery["request_id"])
        return self.async_abort(reason="rejected", description_placeholders=self._placeholders(shown))

    @callback
    def async_remove(self) -> None:
        """However the dialog ended, a request of the appliance still waiting keeps a card.

        One the dialog could not decide (the appliance locked meanwhile, a proof it no longer has),
        another key waiting behind it, or any request when a user who may not decide deleted the flow
        (Home Assistant lets any user; only the steps are the owner's). A request whose PIN was typed
        waits for its exchange without one, and gets it back if the exchange disproves the PIN.
        """
        if self._discovery and (runtime := hub_runtime(self.hass)) is not None:
            runtime.decisions.show_again(self._discovery["identity"])

    async def async_step_ignore(self, user_input: dict[str, Any]) -> ConfigFlowResult:
        """Ignoring a discovered appliance refuses its requests while it stays ignored."""
        if (runtime := hub_runtime(self.hass)) is not None:
            runtime.decisions.ignore_identity(user_input["unique_id"])
        return await super().async_step_ignore(user_input)

    def _review(self) -> OwnerReview | ConfigFlowResult:
        """The request as it stands now, or the abort that says why there is none."""
        runtime = hub_runtime(self.hass)
        if runtime is None:
            return self.async_abort(reason="not_running")
        try:
            return runtime.decisions.review(self._discovery["request_id"])
        except PendingRequestGone:  # expired meanwhile (another key waiting gets its card: async_remove)
            return self.async_abort(reason="request_gone")

    async def _approve(
        self, shown: OwnerReview, *, pin: str | None, use_new_details: bool
    ) -> ConfigFlowResult:
        runtime = hub_runtime(self.hass)
        assert runtime is not None  # noqa: S101 - _review found it
        placeholders = self._placeholders(shown)
        request_id = self._discovery["request_id"]
        try:  # the request was there a moment ago (_review), but the appliance may be paired since
            with runtime.decisions.deciding(self.flow_id):
                approved = await runtime.decisions.async_approve(
                    request_id, pin=pin, use_new_details=use_new_details
                )
        except LockedOut:
            return self.async_abort(reason="locked_out")
        except PendingRequestGone:  # it went while the PIN was checked
            return self.async_abort(reason="request_gone")
        except NameTaken:
            return self.async_abort(reason="name_taken", description_placeholders=placeholders)
        except NotAllowed:  # ProofMismatch: the way this page offered is not enough any more
            return self.async_abort(reason="cannot_approve", description_placeholders=placeholders)
        if isinstance(approved, PinGiven):  # nothing is approved before the appliance proves the PIN
            self._proof = self.hass.async_create_task(
                _proven_within(runtime.decisions.next_exchange(request_id), EXCHANGE_WAIT),
                "est_pairing: waiting for a PIN exchange",
            )
            self._proof_placeholders = placeholders
            return await self.async_step_exchange()
        return self.async_abort(reason="approved", description_placeholders=placeholders)

    @staticmethod
    def _placeholders(shown: OwnerReview) -> dict[str, str]:
        """What the dialogs show; text the appliance chose is escaped, as they are rendered as markdown."""
        pending = shown.review.pending
        details = pending.details
        device = shown.device or (shown.review.paired.details if shown.review.paired else ApplianceDetails())
        return {
            "name": _literal(details.name or pending.appliance_id),
            "appliance_id": _literal(pending.appliance_id),
            **_detail_placeholders("", details),
            "address": pending.address or "-",
            "key_type": pending.key_description,
            "short_fingerprint": format_fingerprint(pending.key_fingerprint, groups=SHORT_FINGERPRINT_GROUPS),
            "fingerprint": format_fingerprint(pending.key_fingerprint),
            "factory_fingerprint": format_fingerprint(pending.factory_fingerprint)
            if pending.factory_fingerprint
            else "-",
            "factory_issuer": _literal(pending.factory_issuer or "-"),
            "paired_key": format_fingerprint(shown.paired_key, groups=SHORT_FINGERPRINT_GROUPS)
            if shown.paired_key
            else "-",
            "paired_name": _literal(device.name or pending.appliance_id),
            **_detail_placeholders("paired_", device),
            "attempts_left": "",
        }


async def _proven_within(
    outcome: asyncio.Future[ExchangeOutcome], seconds: float
) -> ExchangeOutcome | TimeoutError:
    """The outcome of the appliance's next PIN exchange, or the TimeoutError if it was not back in time."""
    try:
        async with asyncio.timeout(seconds):
            return await outcome
    except TimeoutError as err:
        return err


def _detail_placeholders(prefix: str, details: ApplianceDetails) -> dict[str, str]:
    return {
        f"{prefix}model": _literal(details.model) if details.model else "-",
        f"{prefix}manufacturer": _literal(details.manufacturer) if details.manufacturer else "-",
        f"{prefix}serial_number": _literal(details.serial_number) if details.serial_number else "-",
    }


def _literal(text: str) -> str:
    """Text shown as itself in markdown: no links, images, emphasis, HTML, extra lines or bidi tricks."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", displayable(text))


class EstOptionsFlow(OptionsFlow):
    """Certificate lifetime, renewal window, manufacturer CA certificates."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One form; the hub reloads with the new settings."""
        errors: dict[str, str] = {}
        if user_input is not None:
            options = {
                CONF_VALIDITY_DAYS: int(user_input[CONF_VALIDITY_DAYS]),
                CONF_RENEWAL_DAYS: int(user_input[CONF_RENEWAL_DAYS]),
                CONF_MANUFACTURER_CAS: user_input.get(CONF_MANUFACTURER_CAS, "").strip(),
            }
            if options[CONF_RENEWAL_DAYS] >= options[CONF_VALIDITY_DAYS]:
                errors[CONF_RENEWAL_DAYS] = "renewal_too_long"
            elif (problem := _manufacturer_cas_problem(options[CONF_MANUFACTURER_CAS])) is not None:
                errors[CONF_MANUFACTURER_CAS] = problem
            else:
                return self.async_create_entry(data=options)
        current = user_input or {
            CONF_VALIDITY_DAYS: self.config_entry.options.get(CONF_VALIDITY_DAYS, DEFAULT_VALIDITY_DAYS),
            CONF_RENEWAL_DAYS: self.config_entry.options.get(CONF_RENEWAL_DAYS, DEFAULT_RENEWAL_DAYS),
            CONF_MANUFACTURER_CAS: self.config_entry.options.get(CONF_MANUFACTURER_CAS, ""),
        }
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(OPTIONS_SCHEMA, current),
            errors=errors,
        )


def _manufacturer_cas_problem(pem: str) -> str | None:
    if not pem:
        return None
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return "invalid_pem"
    for certificate in certificates:
        try:
            if not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                return "not_a_ca"
        except x509.ExtensionNotFound:
            return "not_a_ca"
    return None


class ApplianceSubentryFlow(ConfigSubentryFlow):
    """Pre-register an appliance (id + PIN) so it enrolls unattended when it appears."""

    SUBENTRY_TYPE = SUBENTRY_APPLIANCE

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Id, PIN and an optional name."""
        entry = self._get_entry()
        if entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="not_running")
        runtime: EstRuntime = entry.runtime_data
        errors: dict[str, str] = {}
        placeholders = {"min_pin_length": str(MIN_PIN_LENGTH), "max_pin_length": str(MAX_SECRET_LENGTH)}
        if user_input is not None:
            appliance_id = user_input[CONF_APPLIANCE_ID].strip()
            name = (user_input.get(CONF_NAME) or "").strip() or None
            try:
                check_appliance_id(appliance_id)
            except MalformedRequest:
                errors[CONF_APPLIANCE_ID] = "invalid_appliance_id"
            else:
                if len(user_input[CONF_PIN]) < MIN_PIN_LENGTH:
                    errors[CONF_PIN] = "pin_too_short"
                elif len(user_input[CONF_PIN]) > MAX_SECRET_LENGTH:
                    errors[CONF_PIN] = "pin_too_long"
                else:
                    try:
                        await runtime.decisions.async_preregister(
                            appliance_id, user_input[CONF_PIN], name, add_subentry=False
                        )
                    except NameTaken:
                        errors[CONF_APPLIANCE_ID] = "case_twin"
                    except (AlreadyPaired, NotAllowed):  # NotAllowed: paired while its verifier was made
                        errors[CONF_APPLIANCE_ID] = "already_paired"
                    except (Busy, CAFailure) as err:  # the SRP worker, busy or failing: nothing was stored
                        errors["base"] = "pin_check_unavailable"
                        placeholders["reason"] = str(err)
                    else:
                        return self.async_create_entry(
                            title=name or appliance_id,
                            data={CONF_APPLIANCE_ID: appliance_id},
                            unique_id=appliance_id,
                        )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(
                APPLIANCE_SCHEMA, {k: v for k, v in (user_input or {}).items() if k != CONF_PIN}
            ),
            errors=errors,
            description_placeholders=placeholders,
        )
