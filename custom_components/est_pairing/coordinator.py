"""One immutable snapshot of the hub for the entities, pushed on every change the library reports.

Entities read only the snapshot. It is built by reading the library, which changes nothing; the
hourly upkeep (the steps that do change things) runs on its own timer and pushes one after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
import logging
from types import MappingProxyType

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator
from homeassistant.util import dt as dt_util

from .announcement import Announcement
from .appliances import appliance_subentries
from .const import DOMAIN
from .est.ledger import CertificateRecord
from .est.service import EstService
from .issues import check_ca_expiry

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApplianceSnapshot:
    """One appliance (a subentry of the hub) as its entities show it."""

    subentry_id: str
    appliance_id: str
    status: str  # awaiting_enrollment, valid, expiring, expired or revoked
    expires: datetime | None  # its newest certificate's notAfter


@dataclass(frozen=True, slots=True)
class HubSnapshot:
    """The hub as its entities show it."""

    ca_expires: datetime
    ca_fingerprint: str  # SHA-256 of the household CA certificate, hex
    qr_payload: str
    pending_requests: int
    appliances: Mapping[str, ApplianceSnapshot]  # by appliance id (read-only)


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


def appliance_status(service: EstService, appliance_id: str, now: datetime, renewal_days: int) -> str:
    """The appliance's certificate status at ``now``."""
    record = service.ledger.latest(appliance_id)
    approved = service.policy.registration(appliance_id) is not None
    if approved and record is not None and record.revoked:
        # Every revocation withdraws the approval: this one came after it (paired again).
        return "awaiting_enrollment"
    if record is None and not approved:
        return "revoked"  # its approval was revoked before its first certificate
    return certificate_status(record, now, renewal_days)


class EstCoordinator(DataUpdateCoordinator[HubSnapshot]):
    """Holds the hub's snapshot: pushed when the library reports a change, and after the upkeep.

    The upkeep (:meth:`async_upkeep`, hourly) re-checks Home Assistant's names and addresses (the
    announcement, and renews the listener's certificate before its end), saves approvals a full
    disk held back, warns of the CA's expiry, and expires requests nobody decided (their cards
    close). It has a timer of its own rather than the coordinator's refresh, which every push
    restarts: a stream of changes (any device on the LAN can make one, by asking for a certificate)
    would put it off for as long as it lasts.
    """

    config_entry: ConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        service: EstService,
        announcement: Announcement,
        renewal_days: int,
    ) -> None:
        super().__init__(
            hass,
            _LOGGER,
            config_entry=entry,
            name=DOMAIN,
            update_interval=None,  # pushed; the upkeep has its own timer
            always_update=False,  # an hour that changed nothing writes no state
        )
        self._service = service
        self._announcement = announcement
        self._renewal_days = renewal_days

    async def _async_update_data(self) -> HubSnapshot:
        """The upkeep, then a new snapshot (the first refresh, at set-up)."""
        await self._upkeep()
        return self.snapshot()

    async def async_upkeep(self, _now: datetime | None = None) -> None:
        """The hourly upkeep (a time-interval listener), then the entities show the hub as it is."""
        await self._upkeep()
        self.push()

    async def _upkeep(self) -> None:
        # The hub's own steps first: the names check talks to the network and zeroconf.
        await self._service.catch_up_policy_save()  # still failing: the repair issue stays
        check_ca_expiry(self.hass, self._service.ca)
        self._service.policy.expire_pending()  # the listener hears, and closes their cards
        await self._announcement.async_check_names()

    def snapshot(self) -> HubSnapshot:
        """The hub as it is now (reading it changes nothing)."""
        service = self._service
        now = dt_util.utcnow()
        appliances = {}
        for subentry_id, appliance_id in appliance_subentries(self.config_entry).items():
            record = service.ledger.latest(appliance_id)
            appliances[appliance_id] = ApplianceSnapshot(
                subentry_id=subentry_id,
                appliance_id=appliance_id,
                status=appliance_status(service, appliance_id, now, self._renewal_days),
                expires=record.expires if record is not None else None,
            )
        return HubSnapshot(
            ca_expires=service.ca.not_valid_after,
            ca_fingerprint=service.ca.fingerprint,
            qr_payload=self._announcement.qr_payload(),
            pending_requests=len(service.policy.pending_requests()),
            appliances=MappingProxyType(appliances),
        )

    @callback
    def push(self) -> None:
        """Something changed: the entities show the hub as it is now.

        A snapshot equal to the one shown writes no state: a burst of renewals of one appliance
        within a second changes nothing an entity shows.
        """
        snapshot = self.snapshot()
        if snapshot != self.data or not self.last_update_success:
            self.async_set_updated_data(snapshot)
