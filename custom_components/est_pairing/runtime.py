"""The hub while its config entry is loaded: the protocol library inside Home Assistant.

It backs the library with Home Assistant storage, starts and stops it, and follows it through one
:class:`~.est.service.ServiceListener`, handing each event to the part whose job it is: the
announcement, the appliances (subentries and devices), the owner's decisions, and the coordinator
whose snapshot the entities show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import logging

from cryptography import x509
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util

from .announcement import Announcement
from .appliances import Appliances
from .const import (
    CONF_CA_NAME,
    CONF_MANUFACTURER_CAS,
    CONF_PORT,
    CONF_RENEWAL_DAYS,
    CONF_VALIDITY_DAYS,
    DEFAULT_RENEWAL_DAYS,
    DEFAULT_VALIDITY_DAYS,
    DOMAIN,
    ISSUE_CA_MISSING,
    ISSUE_LISTENER_NAMES,
    ISSUE_PORT_UNAVAILABLE,
    ISSUE_STORAGE_UNWRITABLE,
    UPKEEP_INTERVAL,
)
from .coordinator import EstCoordinator
from .decisions import Decisions
from .est.errors import EstError, HouseholdCAMissing
from .est.ledger import CertificateRecord
from .est.policy import ExchangeFailure, PendingEnrollment, Registration
from .est.service import EstService, ServiceConfig, ServiceListener
from .issues import approvals_saved, raise_issue
from .store import DocumentStore, LedgerJournal

_LOGGER = logging.getLogger(__name__)

type EstConfigEntry = ConfigEntry[EstRuntime]

BIND_HOST: str | None = None  # every interface; tests bind 127.0.0.1 only


@dataclass(frozen=True, slots=True)
class HubSettings:
    """What the hub runs with, from the config entry's data and options."""

    ca_name: str
    port: int
    validity_days: int
    renewal_days: int
    manufacturer_cas: str

    @classmethod
    def from_entry(cls, entry: ConfigEntry) -> HubSettings:
        """Read data and options."""
        return cls(
            ca_name=entry.data[CONF_CA_NAME],
            port=entry.data[CONF_PORT],
            validity_days=int(entry.options.get(CONF_VALIDITY_DAYS, DEFAULT_VALIDITY_DAYS)),
            renewal_days=int(entry.options.get(CONF_RENEWAL_DAYS, DEFAULT_RENEWAL_DAYS)),
            manufacturer_cas=entry.options.get(CONF_MANUFACTURER_CAS, ""),
        )

    def manufacturer_certificates(self) -> list[x509.Certificate]:
        """The manufacturer CAs factory certificates may chain to."""
        if not self.manufacturer_cas.strip():
            return []
        return x509.load_pem_x509_certificates(self.manufacturer_cas.encode())


def hub_runtime(hass: HomeAssistant) -> EstRuntime | None:
    """The loaded hub's runtime, if any (there is at most one hub)."""
    entries = hass.config_entries.async_loaded_entries(DOMAIN)
    if not entries:
        return None
    runtime: EstRuntime = entries[0].runtime_data
    return runtime


class EstRuntime(ServiceListener):
    """Everything one hub runs while its config entry is loaded, and what it hears from the library."""

    def __init__(self, hass: HomeAssistant, entry: EstConfigEntry, settings: HubSettings) -> None:
        self.hass = hass
        self.entry = entry
        self.settings = settings
        self.service = EstService(
            ServiceConfig(
                ca_name=settings.ca_name,
                port=settings.port,
                bind_host=BIND_HOST,
                validity_days=settings.validity_days,
                manufacturer_cas=settings.manufacturer_certificates(),
            ),
            ca_store=DocumentStore(hass, entry.entry_id, "ca"),
            policy_store=DocumentStore(hass, entry.entry_id, "approvals"),
            ledger_journal=LedgerJournal(hass, entry.entry_id),
            clock=lambda: dt_util.utcnow().timestamp(),
            listener=self,
        )
        self.announcement = Announcement(hass, self.service, settings.ca_name)
        self.appliances = Appliances(hass, entry, self.service)
        self.decisions = Decisions(hass, self.service, self.appliances)
        self.coordinator = EstCoordinator(hass, entry, self.service, self.announcement, settings.renewal_days)
        self._unsubscribers: list[Callable[[], None]] = []

    # --- life cycle ---------------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Load or create the CA, start the listener, announce it, take the first snapshot.

        Raises ConfigEntryNotReady if the port cannot be bound; a repair issue tells the owner why.
        Whatever it raises, the caller stops what it started (``async_stop``).
        """
        names = await self.announcement.listener_names()
        self.service.config.names = names
        self.service.issuance.reserved_names = names.all()
        try:
            await self.service.load()  # creates the household CA on first start (the library logs it)
        except HouseholdCAMissing as err:  # retrying cannot help: the owner restores a backup
            raise_issue(self.hass, ISSUE_CA_MISSING, ir.IssueSeverity.CRITICAL)
            raise ConfigEntryError(translation_domain=DOMAIN, translation_key=ISSUE_CA_MISSING) from err
        except OSError as err:  # a CA that was not saved is not used: nothing is issued under it
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key=ISSUE_STORAGE_UNWRITABLE,
                translation_placeholders={"error": str(err)},
            ) from err
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_CA_MISSING)  # restored from a backup
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_STORAGE_UNWRITABLE)  # memory and disk agree again
        try:
            for appliance_id in self.appliances.reconcile():
                await self.decisions.async_revoke_removed(appliance_id)
        except EstError as err:  # the ledger cannot record it: no appliance the owner deleted runs on
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key=ISSUE_STORAGE_UNWRITABLE,
                translation_placeholders={"error": str(err)},
            ) from err
        try:
            await self.service.start()
        except OSError as err:
            raise_issue(
                self.hass,
                ISSUE_PORT_UNAVAILABLE,
                ir.IssueSeverity.ERROR,
                port=str(self.settings.port),
                error=err.strerror or str(err),
            )
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key=ISSUE_PORT_UNAVAILABLE,
                translation_placeholders={"port": str(self.settings.port)},
            ) from err
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_PORT_UNAVAILABLE)
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_LISTENER_NAMES)  # started with a certificate for names
        await self.announcement.async_announce(names)
        self.appliances.remember()
        await self.coordinator.async_config_entry_first_refresh()
        self._unsubscribers.append(
            async_track_time_interval(
                self.hass, self.coordinator.async_upkeep, UPKEEP_INTERVAL, name="est_pairing upkeep"
            )
        )

    async def async_shutdown(self, _event: Event) -> None:
        """Home Assistant stops: stop as an unload would, which waits for pending approval saves."""
        await self.async_stop()

    async def async_stop(self) -> None:
        """Withdraw the announcement, stop the listener, drop flows for requests that die with it.

        Safe to call again (an unload after Home Assistant's stop event).
        """
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self._unsubscribers.clear()
        try:
            await self.announcement.async_withdraw()
        finally:  # whatever zeroconf does, the port is freed and approvals are written
            self.decisions.close_cards()
            await self.service.stop()

    async def async_reissue_listener_certificate(self) -> None:
        """Cover the current names and addresses again (the repair issue's fix)."""
        await self.announcement.async_reissue()
        self.coordinator.push()  # the QR payload names the new address

    async def async_sync_subentries(self) -> None:
        """The entry's subentries changed: entities for new appliances, removed ones revoked."""
        removed = self.appliances.sync()
        self.coordinator.push()  # each platform adds the entities of appliances new in the snapshot
        for appliance_id in removed:
            try:
                await self.decisions.async_revoke_removed(appliance_id)
            except EstError as err:  # still marked: the hub's next start revokes it
                _LOGGER.warning("Could not revoke %s, whose entry was deleted: %s", appliance_id, err)

    # --- what the library tells (ServiceListener) ---------------------------------------------------

    @callback
    def pending_added(self, pending: PendingEnrollment) -> None:
        """A new request waits for the owner."""
        self.decisions.pending_added(pending)
        self.coordinator.push()

    @callback
    def pending_removed(self, pending: PendingEnrollment) -> None:
        """A request stopped waiting."""
        self.decisions.pending_removed(pending)
        self.coordinator.push()

    @callback
    def approvals_changed(self) -> None:
        """An appliance was approved, pre-registered, rejected or removed."""
        self.coordinator.push()

    @callback
    def exchange_failed(self, failure: ExchangeFailure) -> None:
        """A PIN exchange's proof was wrong."""
        self.decisions.exchange_failed(failure)

    @callback
    def exchange_approved(self, registration: Registration) -> None:
        """A PIN exchange proved the PIN the owner typed for a waiting request."""
        self.decisions.exchange_approved(registration)

    @callback
    def certificate_recorded(self, record: CertificateRecord) -> None:
        """A certificate was issued, renewed or revoked."""
        self.appliances.certificate_recorded(record)
        self.coordinator.push()

    @callback
    def approvals_saved(self, error: OSError | None) -> None:
        """A save of the approvals ended."""
        approvals_saved(self.hass, error)

    @callback
    def refusal(self, identity: str) -> str | None:
        """Whether the owner ignored this appliance."""
        return self.decisions.refusal(identity)
