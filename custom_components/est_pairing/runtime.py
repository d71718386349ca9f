"""The adapter: runs the protocol library inside Home Assistant.

It backs the library with Home Assistant storage, starts the EST listener, announces it over Home
Assistant's shared zeroconf instance, turns pending enrollment requests into discovery flows, keeps an
appliance (config subentry) for every approved appliance, and tells entities when the ledger changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
import logging
import socket
from types import MappingProxyType
from typing import Any

from cryptography import x509
from homeassistant.components import network, zeroconf
from homeassistant.config_entries import (
    SOURCE_IGNORE,
    SOURCE_INTEGRATION_DISCOVERY,
    ConfigEntry,
    ConfigSubentry,
)
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import device_registry as dr, discovery_flow, issue_registry as ir
from homeassistant.helpers.dispatcher import async_dispatcher_send
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util
from zeroconf.asyncio import AsyncServiceInfo

from .const import (
    CA_EXPIRY_WARNING,
    CONF_APPLIANCE_ID,
    CONF_APPLIANCES,
    CONF_CA_NAME,
    CONF_MANUFACTURER_CAS,
    CONF_PORT,
    CONF_RENEWAL_DAYS,
    CONF_VALIDITY_DAYS,
    DEFAULT_RENEWAL_DAYS,
    DEFAULT_VALIDITY_DAYS,
    DOMAIN,
    ISSUE_CA_EXPIRING,
    ISSUE_LISTENER_NAMES,
    ISSUE_PORT_UNAVAILABLE,
    ISSUE_STORAGE_UNWRITABLE,
    REFRESH_INTERVAL,
    SUBENTRY_APPLIANCE,
)
from .est import discovery
from .est.ca import household_ca_name
from .est.csr import ApplianceDetails
from .est.fingerprints import format_fingerprint
from .est.ledger import CertificateRecord
from .est.policy import ExchangeFailure, PendingEnrollment, PinGiven, Registration, Review
from .est.service import EstService, ServiceConfig
from .est.tls import ListenerNames
from .exceptions import AlreadyPaired, NotSaved
from .store import DocumentStore, LedgerJournal

_LOGGER = logging.getLogger(__name__)
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


def pending_discovery_data(pending: PendingEnrollment) -> dict[str, Any]:
    """What a discovery flow needs to find one pending request and name its card (JSON-safe).

    What the dialogs show is worked out when they are shown (:meth:`EstRuntime.review`): the
    appliance may have been paired, or its device changed, since the request arrived.
    """
    return {
        "request_id": pending.request_id,
        "identity": pending.identity,
        "appliance_id": pending.appliance_id,
        "name": pending.details.name or pending.appliance_id,
    }


@dataclass(frozen=True, slots=True)
class OwnerReview:
    """A waiting request as the owner's dialog shows it, worked out when shown.

    ``device``: what the appliance's device (kept after a revocation too) shows now, if it has one;
    ``paired_key``: the key of the paired appliance's newest certificate (or one the owner approved).
    """

    review: Review
    device: ApplianceDetails | None
    paired_key: str | None

    @property
    def new_details(self) -> bool:
        """Whether the request reports another model, manufacturer or serial number than the device."""
        return self.device is not None and _device_details(self.device) != _device_details(
            self.review.pending.details
        )


def hub_runtime(hass: HomeAssistant) -> EstRuntime | None:
    """The loaded hub's runtime, if any (there is at most one hub)."""
    entries = hass.config_entries.async_loaded_entries(DOMAIN)
    if not entries:
        return None
    runtime: EstRuntime = entries[0].runtime_data
    return runtime


def appliance_subentry(entry: ConfigEntry, appliance_id: str) -> ConfigSubentry | None:
    """The appliance's subentry (one at most: the appliance id is its unique id)."""
    for subentry in entry.subentries.values():
        if subentry.subentry_type == SUBENTRY_APPLIANCE and subentry.data[CONF_APPLIANCE_ID] == appliance_id:
            return subentry
    return None


@callback
def remove_appliance_subentry(hass: HomeAssistant, entry: ConfigEntry, appliance_id: str) -> None:
    """Drop the appliance's subentry, if it still has one."""
    if (subentry := appliance_subentry(entry, appliance_id)) is not None:
        hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)


def _device_details(details: ApplianceDetails) -> dict[str, str | None]:
    """The subentry data an appliance's details fill in (its device shows them)."""
    return {
        "model": details.model,
        "manufacturer": details.manufacturer,
        "serial_number": details.serial_number,
    }


def certificate_status(record: CertificateRecord | None, now: datetime, renewal_days: int) -> str:
    """awaiting_enrollment, valid, expiring, expired or revoked."""
    if record is None:
        return "awaiting_enrollment"
    if record.revoked:
        return "revoked"
    if record.expired(now):
        return "expired"
    if now >= record.expires - timedelta(days=renewal_days):
        return "expiring"
    return "valid"


class EstRuntime:
    """Everything one hub runs while its config entry is loaded."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, settings: HubSettings) -> None:
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
        )
        self.signal_appliance = f"{DOMAIN}_{entry.entry_id}_appliance"
        self.signal_new_appliance = f"{DOMAIN}_{entry.entry_id}_new_appliance"
        self.signal_hub = f"{DOMAIN}_{entry.entry_id}_hub"
        self._known_subentries: dict[str, str] = {}  # subentry id -> appliance id
        self._service_info: AsyncServiceInfo | None = None
        self._unsubscribers: list[Callable[[], None]] = []
        self._stopping = False

    # --- life cycle ---------------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Load or create the CA, start the listener, announce it.

        Raises ConfigEntryNotReady if the port cannot be bound; a repair issue tells the owner why.
        Whatever it raises, the caller stops what it started (``async_stop``).
        """
        names = await self._listener_names()
        self.service.config.names = names
        self.service.issuance.reserved_names = names.all()
        try:
            await self.service.load()  # creates the household CA on first start (the library logs it)
        except OSError as err:  # a CA that was not saved is not used: nothing is issued under it
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key=ISSUE_STORAGE_UNWRITABLE,
                translation_placeholders={"error": str(err)},
            ) from err
        self.service.on_policy_saved = self._policy_saved
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_STORAGE_UNWRITABLE)  # memory and disk agree again
        policy = self.service.policy
        policy.on_pending_added = self._pending_added
        policy.on_pending_removed = self._pending_removed
        policy.on_exchange_approved = self._exchange_approved
        policy.on_exchange_failed = self._exchange_failed
        policy.refusal = self._refusal
        self._unsubscribers.append(self.service.ledger.subscribe(self._ledger_changed))
        await self._reconcile_appliances()
        try:
            await self.service.start()
        except OSError as err:
            self._raise_issue(
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
        await self._announce(names)
        self._known_subentries = self._appliance_subentries()
        self._check_ca_expiry()
        self._unsubscribers.append(
            async_track_time_interval(self.hass, self._async_refresh, REFRESH_INTERVAL)
        )

    async def async_shutdown(self, _event: Event) -> None:
        """Home Assistant stops: stop as an unload would, which waits for pending approval saves."""
        await self.async_stop()

    async def async_stop(self) -> None:
        """Withdraw the announcement, stop the listener, drop flows for requests that die with it.

        Safe to call again (an unload after Home Assistant's stop event).
        """
        self._stopping = True  # the flows closed below stay closed
        for unsubscribe in self._unsubscribers:
            unsubscribe()
        self._unsubscribers.clear()
        try:
            if (service_info := self._service_info) is not None:
                self._service_info = None
                aiozc = await zeroconf.async_get_async_instance(self.hass)
                goodbye = await aiozc.async_unregister_service(service_info)
                await goodbye  # the goodbye packets go out now, not from a task left behind by the unload
        finally:  # whatever zeroconf does, the port is freed and approvals are written
            for identity in {p.identity for p in self.service.policy.pending_requests()}:
                for flow_id in self._flows_for(identity):
                    self.hass.config_entries.flow.async_abort(flow_id)
            await self.service.stop()

    # --- the network ----------------------------------------------------------------------------------

    @property
    def host_name(self) -> str:
        """The machine's host name (the mDNS name is ``<host>.local``)."""
        return socket.gethostname().split(".")[0].lower() or "homeassistant"

    async def _listener_names(self) -> ListenerNames:
        addresses = await network.async_get_announce_addresses(self.hass)
        host = self.host_name
        return ListenerNames.from_hosts([f"{host}.local", host, *addresses, "localhost", "127.0.0.1"])

    @staticmethod
    def _announced_addresses(names: ListenerNames) -> list[str]:
        # Those the listener certificate covers: an appliance connecting to a public address Home
        # Assistant also has could not verify it there. Others only if it has no covered one (the
        # SRV record's <host>.local, which the certificate covers, still verifies).
        for addresses in (names.certified().ip_addresses, names.ip_addresses):
            if reachable := [str(a) for a in addresses if not a.is_loopback]:
                return reachable
        return [str(a) for a in names.ip_addresses]

    async def _announce(self, names: ListenerNames) -> None:
        info = discovery.service_info(
            household_ca_name(self.settings.ca_name, max_bytes=discovery.MAX_INSTANCE_BYTES),
            port=self.service.port,
            ca_fingerprint=self.service.ca.fingerprint,
            server=f"{self.host_name}.local.",
            addresses=self._announced_addresses(names),
        )
        aiozc = await zeroconf.async_get_async_instance(self.hass)
        if self._service_info is None:
            await aiozc.async_register_service(info, allow_name_change=True)
        else:
            info.name = self._service_info.name  # keep the name negotiated at registration
            await aiozc.async_update_service(info)
        self._service_info = info

    @property
    def service_info(self) -> AsyncServiceInfo | None:
        """The mDNS registration, while announced."""
        return self._service_info

    async def async_reissue_listener_certificate(self) -> None:
        """Cover the current names and addresses again (the repair issue's fix)."""
        names = await self._listener_names()
        await self.service.update_names(names)
        await self._announce(names)
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_LISTENER_NAMES)
        async_dispatcher_send(self.hass, self.signal_hub)  # the QR payload names the new address

    async def _async_refresh(self, _now: datetime | None = None) -> None:
        names = await self._listener_names()
        if not self.service.listener_identity.covers(names):
            self._raise_issue(ISSUE_LISTENER_NAMES, ir.IssueSeverity.WARNING, names=", ".join(names.all()))
        else:
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_LISTENER_NAMES)  # the addresses came back
            if self.service.listener_identity.needs_renewal(self.service.ca, names, self.service.now()):
                try:
                    await self.service.update_names(names)
                except OSError as err:  # the listener keeps its certificate; the next check tries again
                    _LOGGER.warning("Could not save the EST server's renewed certificate: %s", err)
        announced = self._service_info
        if announced is not None and set(announced.parsed_addresses()) != set(
            self._announced_addresses(names)
        ):
            # Announce where Home Assistant is now: while the listener-names issue is open, appliances
            # that check the certificate for <host>.local, which it still covers, reach it there.
            await self._announce(names)
        await self.service.catch_up_policy_save()  # still failing: the repair issue stays
        self._check_ca_expiry()
        self.service.policy.pending_requests()  # forgets expired requests, which closes their flows
        async_dispatcher_send(self.hass, self.signal_appliance, None)
        async_dispatcher_send(self.hass, self.signal_hub)

    def _check_ca_expiry(self) -> None:
        expires = self.service.ca.not_valid_after
        if expires - dt_util.utcnow() < CA_EXPIRY_WARNING:
            self._raise_issue(ISSUE_CA_EXPIRING, ir.IssueSeverity.WARNING, expires=expires.date().isoformat())
        else:
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_CA_EXPIRING)

    @callback
    def _policy_saved(self, error: OSError | None) -> None:
        if error is None:
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_STORAGE_UNWRITABLE)
        else:
            self._raise_issue(ISSUE_STORAGE_UNWRITABLE, ir.IssueSeverity.ERROR, error=str(error))

    def _raise_issue(self, issue_id: str, severity: ir.IssueSeverity, **placeholders: str) -> None:
        """A repair issue whose translation key is its id; only the listener names one is fixable."""
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=issue_id == ISSUE_LISTENER_NAMES,
            severity=severity,
            translation_key=issue_id,
            translation_placeholders=placeholders,
        )

    # --- what the owner sees ------------------------------------------------------------------------

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 of the household CA certificate, hex."""
        return self.service.ca.fingerprint

    @property
    def qr_payload(self) -> str:
        """What an appliance that scans a QR code needs: where to enroll and which CA to expect."""
        certified = self.service.config.names.certified()  # an address the certificate covers
        addresses = [a for a in certified.ip_addresses if not a.is_loopback]
        host = str(addresses[0]) if addresses else f"{self.host_name}.local"
        return discovery.qr_payload(host, self.service.port, self.ca_fingerprint)

    def formatted_fingerprint(self, *, groups: int | None = None) -> str:
        """The CA fingerprint in groups of four, for people."""
        return format_fingerprint(self.ca_fingerprint, groups=groups)

    # --- pending requests -> discovery flows --------------------------------------------------------

    @callback
    def _pending_added(self, pending: PendingEnrollment) -> None:
        _LOGGER.info(
            "Appliance %s asks to enroll from %s; waiting for the owner",
            pending.appliance_id,
            pending.address,
        )
        self._start_flow(pending)
        async_dispatcher_send(self.hass, self.signal_hub)

    @callback
    def _start_flow(self, pending: PendingEnrollment) -> None:
        discovery_flow.async_create_flow(
            self.hass,
            DOMAIN,
            context={"source": SOURCE_INTEGRATION_DISCOVERY},
            data=pending_discovery_data(pending),
        )

    @callback
    def _pending_removed(self, pending: PendingEnrollment) -> None:
        # Deferred: the flow that approved or rejected this request is still finishing its step.
        self.hass.loop.call_soon(self._resync_flows, pending.identity)
        async_dispatcher_send(self.hass, self.signal_hub)

    def _flows_for(self, identity: str) -> list[str]:
        return [
            flow["flow_id"]
            for flow in self.hass.config_entries.flow.async_progress_by_handler(
                DOMAIN, match_context={"unique_id": identity}
            )
        ]

    @callback
    def _resync_flows(self, identity: str) -> None:
        """One discovery flow per identity while it has pending requests, none after."""
        waiting = [p for p in self.service.policy.pending_requests() if p.identity == identity]
        flows = self._flows_for(identity)
        if not waiting:
            for flow_id in flows:
                self.hass.config_entries.flow.async_abort(flow_id)
        elif not flows:  # another key of the same appliance id was waiting behind this one
            self._start_flow(waiting[0])

    @callback
    def show_again(self, identity: str) -> None:
        """A dialog closed without a decision: its waiting request gets a card again (unless stopping)."""
        self.hass.loop.call_soon(self._show_again, identity)

    @callback
    def _show_again(self, identity: str) -> None:
        if not self._stopping:
            self._resync_flows(identity)

    # --- the owner's decisions ----------------------------------------------------------------------

    def review(self, request_id: str) -> OwnerReview:
        """What the owner's dialog shows about a waiting request now (PendingRequestGone if gone)."""
        review = self.service.policy.review(request_id)
        appliance_id = review.pending.appliance_id
        subentry = self._subentry_for(appliance_id)
        device = None
        if subentry is not None:
            device = ApplianceDetails(
                name=subentry.title,
                model=subentry.data.get("model"),
                manufacturer=subentry.data.get("manufacturer"),
                serial_number=subentry.data.get("serial_number"),
            )
        paired_key = None
        if review.paired is not None:
            latest = self.service.ledger.latest(appliance_id)
            approved = sorted(review.paired.keys)
            paired_key = latest.key_fingerprint if latest is not None else next(iter(approved), None)
        return OwnerReview(review, device, paired_key)

    async def approve(
        self, request_id: str, *, pin: str | None, use_new_details: bool = False
    ) -> Registration | PinGiven:
        """Approve a pending request (raises the library's errors) and add the appliance.

        An appliance that has a device keeps its details unless the owner chose the request's. One
        that pairs through the PIN exchange is added once its exchange proves the PIN typed.
        """
        device = self.review(request_id).device
        outcome = await self.service.policy.approve(
            request_id, pin=pin, use_new_details=use_new_details, known=device
        )
        if isinstance(outcome, Registration):
            self._added(outcome, update=use_new_details)
        return outcome

    @callback
    def _exchange_approved(self, registration: Registration) -> None:
        self._added(registration, update=False)

    @callback
    def _exchange_failed(self, failure: ExchangeFailure) -> None:
        # The PIN the owner typed did not match the appliance's: its card comes back to type it again.
        if failure.pending is not None and failure.attempts_left:
            self.show_again(failure.pending.identity)

    @callback
    def _added(self, registration: Registration, *, update: bool) -> None:
        self._ensure_subentry(registration.appliance_id, registration.details, update=update)
        # One revoked before its first certificate, approved again, awaits enrollment again.
        async_dispatcher_send(self.hass, self.signal_appliance, registration.appliance_id)

    def reject(self, request_id: str) -> None:
        """Reject one pending request."""
        self.service.policy.reject(request_id)

    def ignore_identity(self, identity: str) -> None:
        """The owner ignored an appliance's discovery: withdraw its waiting requests.

        While it stays ignored the policy refuses its requests (``_refusal``); once the owner deletes
        the ignored entry it may ask again, with the same key too.
        """
        for pending in self.service.policy.pending_requests():
            if pending.identity == identity:
                self.service.policy.withdraw(pending.request_id)

    @callback
    def _refusal(self, identity: str) -> str | None:
        ignored = self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, identity)
        if ignored is not None and ignored.source == SOURCE_IGNORE:
            return "the owner ignored this appliance in Home Assistant"
        return None

    async def preregister(
        self, appliance_id: str, pin: str, name: str | None, *, add_subentry: bool = True
    ) -> Registration:
        """Let an appliance enroll unattended with this id and PIN; adds it as an appliance.

        Raises AlreadyPaired for an appliance the hub has: a PIN must not replace the keys the owner
        approved. The subentry flow creates the subentry itself (``add_subentry=False``).
        """
        if self.service.policy.registration(appliance_id) is not None or (
            appliance_id in self._appliance_subentries().values()
        ):
            raise AlreadyPaired(appliance_id)
        registration = await self.service.policy.preregister(appliance_id, pin, ApplianceDetails(name=name))
        if add_subentry:
            self._ensure_subentry(appliance_id, registration.details)
        return registration

    async def async_revoke(self, appliance_id: str) -> list[CertificateRecord]:
        """Revoke an appliance's certificates; it cannot re-enroll until paired again."""
        records = await self.service.registrar.revoke_appliance(appliance_id)
        # Its registration is gone from the approvals on disk too before this returns: a PIN left
        # there by a crash would let it enroll again with a new key.
        try:
            await self.service.flush(check=True)
        except OSError as err:
            raise NotSaved(appliance_id, len(records)) from err
        _LOGGER.info("Revoked %s certificate(s) of %s", len(records), appliance_id)
        async_dispatcher_send(self.hass, self.signal_appliance, appliance_id)
        return records

    async def async_remove_appliance(self, appliance_id: str) -> None:
        """Revoke and forget an appliance whose device the owner deletes."""
        await self.async_revoke(appliance_id)
        # After the device registry has finished removing the device, drop the subentry too.
        self.hass.loop.call_soon(self._remove_subentry, appliance_id)

    @callback
    def _remove_subentry(self, appliance_id: str) -> None:
        if (subentry := self._subentry_for(appliance_id)) is not None:
            self._known_subentries.pop(subentry.subentry_id, None)  # before: listeners may run eagerly
            self.hass.config_entries.async_remove_subentry(self.entry, subentry.subentry_id)

    def _ensure_subentry(self, appliance_id: str, details: ApplianceDetails, *, update: bool = False) -> None:
        """Add the appliance's subentry; one it has already keeps its details unless ``update``.

        An appliance paired again after a revocation, or with a new key, keeps its subentry and
        device; what its new request says about it (model, manufacturer, serial number) replaces
        what the device shows only when the owner chose so. The title stays: the owner may have
        renamed it.
        """
        if (subentry := self._subentry_for(appliance_id)) is not None:
            if update:
                self._update_details(subentry, details, fill_only=False)
            return
        self.hass.config_entries.async_add_subentry(
            self.entry,
            ConfigSubentry(
                data=MappingProxyType({CONF_APPLIANCE_ID: appliance_id, **_device_details(details)}),
                subentry_type=SUBENTRY_APPLIANCE,
                title=details.name or appliance_id,
                unique_id=appliance_id,
            ),
        )

    def _subentry_for(self, appliance_id: str) -> ConfigSubentry | None:
        return appliance_subentry(self.entry, appliance_id)

    def _update_details(
        self, subentry: ConfigSubentry, details: ApplianceDetails, *, fill_only: bool
    ) -> None:
        """Put what the appliance says about itself in its subentry and device.

        ``fill_only``: only where the subentry knows nothing yet (what a pre-registered appliance
        reports when it enrolls); otherwise the details replace the old ones (an appliance paired
        again may be another unit under the same id).
        """
        said = _device_details(details)
        if fill_only:
            said = {key: value for key, value in said.items() if subentry.data.get(key) is None}
        if all(subentry.data.get(key) == value for key, value in said.items()):
            return
        data = {**subentry.data, **said}
        self.hass.config_entries.async_update_subentry(self.entry, subentry, data=data)
        registry = dr.async_get(self.hass)
        device = registry.async_get_device(identifiers={(DOMAIN, subentry.data[CONF_APPLIANCE_ID])})
        if device is not None:
            registry.async_update_device(
                device.id,
                model=data.get("model"),
                manufacturer=data.get("manufacturer"),
                serial_number=data.get("serial_number"),
            )

    def _appliance_subentries(self) -> dict[str, str]:
        return {
            subentry_id: subentry.data[CONF_APPLIANCE_ID]
            for subentry_id, subentry in self.entry.subentries.items()
            if subentry.subentry_type == SUBENTRY_APPLIANCE
        }

    async def _reconcile_appliances(self) -> None:
        """Match the approvals and certificates to the appliance subentries, at start.

        The update listener only sees removals while the hub is loaded. An appliance marked in the
        entry's data (CONF_APPLIANCES) whose subentry is gone was deleted while the hub was not
        running (a setup retry, a disabled hub): it is revoked. A registered appliance with neither
        subentry nor mark was approved just before Home Assistant died, before it wrote its config
        entries (the approval is written at once, the subentry a second later): its subentry is made
        again. Certificates of an appliance with neither registration nor subentry are revoked.
        """
        current = set(self._appliance_subentries().values())
        marked = set(self.entry.data.get(CONF_APPLIANCES, current))
        policy, ledger = self.service.policy, self.service.ledger
        registered = {registration.appliance_id: registration for registration in policy.registrations()}
        certified = {
            appliance_id
            for appliance_id in ledger.appliances()
            if any(not record.revoked for record in ledger.for_appliance(appliance_id))
        }
        for appliance_id in sorted((set(registered) | certified) - current):
            if appliance_id in registered and appliance_id not in marked:
                _LOGGER.warning("Appliance %s lost its entry in a crash: adding it again", appliance_id)
                self._ensure_subentry(appliance_id, registered[appliance_id].details)
            else:
                _LOGGER.warning(
                    "Appliance %s was removed while the hub was stopped: revoking it", appliance_id
                )
                await self._revoke_removed(appliance_id)
        # What a pre-registered appliance reported is saved at once, its subentry a second later.
        for subentry_id, appliance_id in self._appliance_subentries().items():
            if appliance_id in registered:
                self._update_details(
                    self.entry.subentries[subentry_id], registered[appliance_id].details, fill_only=True
                )
        self._mark_appliances()

    @callback
    def _mark_appliances(self) -> None:
        """Note in the entry's data which appliances have a subentry (saved with the subentries)."""
        appliances = sorted(set(self._appliance_subentries().values()))
        if self.entry.data.get(CONF_APPLIANCES) != appliances:
            self.hass.config_entries.async_update_entry(
                self.entry, data={**self.entry.data, CONF_APPLIANCES: appliances}
            )

    async def async_sync_subentries(self) -> None:
        """The entry's subentries changed: add entities for new appliances, revoke removed ones."""
        current = self._appliance_subentries()
        added = {sid: aid for sid, aid in current.items() if sid not in self._known_subentries}
        removed = [aid for sid, aid in self._known_subentries.items() if sid not in current]
        self._known_subentries = current
        self._mark_appliances()
        for subentry_id in added:
            async_dispatcher_send(self.hass, self.signal_new_appliance, subentry_id)
        for appliance_id in removed:
            await self._revoke_removed(appliance_id)

    async def _revoke_removed(self, appliance_id: str) -> None:
        """Revoke an appliance whose subentry is gone; approvals that cannot be saved stop no other."""
        try:
            await self.async_revoke(appliance_id)
        except NotSaved:  # revoked; the storage repair issue tells the owner, the next save retries
            _LOGGER.warning("Revoked %s, but the approvals could not be saved", appliance_id)

    # --- ledger -> entities -------------------------------------------------------------------------

    @callback
    def _ledger_changed(self, record: CertificateRecord) -> None:
        # A pre-registered appliance's first certificate: the policy has learnt what it reports.
        registration = self.service.policy.registration(record.appliance_id)
        subentry = self._subentry_for(record.appliance_id)
        if registration is not None and subentry is not None:
            self._update_details(subentry, registration.details, fill_only=True)
        async_dispatcher_send(self.hass, self.signal_appliance, record.appliance_id)

    def latest_certificate(self, appliance_id: str) -> CertificateRecord | None:
        """The appliance's newest certificate."""
        return self.service.ledger.latest(appliance_id)

    def status(self, appliance_id: str) -> str:
        """The appliance's certificate status now."""
        record = self.latest_certificate(appliance_id)
        if record is None and self.service.policy.registration(appliance_id) is None:
            return "revoked"  # its approval was revoked before its first certificate
        return certificate_status(record, dt_util.utcnow(), self.settings.renewal_days)
