"""Appliances as config subentries of the hub, each with its device, kept in step with the approvals.

Every appliance the owner approved or pre-registered has a subentry (its unique id is the appliance
id) and a device showing what the appliance says about itself. Deleting the subentry revokes it.
"""

from __future__ import annotations

import logging
from types import MappingProxyType

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import CONF_APPLIANCE_ID, CONF_APPLIANCES, DOMAIN, SUBENTRY_APPLIANCE
from .est.csr import ApplianceDetails
from .est.ledger import CertificateRecord
from .est.service import EstService

_LOGGER = logging.getLogger(__name__)


def appliance_subentry(entry: ConfigEntry, appliance_id: str) -> ConfigSubentry | None:
    """The appliance's subentry (one at most: the appliance id is its unique id)."""
    for subentry in entry.subentries.values():
        if subentry.subentry_type == SUBENTRY_APPLIANCE and subentry.data[CONF_APPLIANCE_ID] == appliance_id:
            return subentry
    return None


def appliance_subentries(entry: ConfigEntry) -> dict[str, str]:
    """Subentry id -> appliance id, for every appliance of the hub."""
    return {
        subentry_id: subentry.data[CONF_APPLIANCE_ID]
        for subentry_id, subentry in entry.subentries.items()
        if subentry.subentry_type == SUBENTRY_APPLIANCE
    }


@callback
def remove_appliance_subentry(hass: HomeAssistant, entry: ConfigEntry, appliance_id: str) -> None:
    """Drop the appliance's subentry, if it still has one."""
    if (subentry := appliance_subentry(entry, appliance_id)) is not None:
        hass.config_entries.async_remove_subentry(entry, subentry.subentry_id)


def device_details(details: ApplianceDetails) -> dict[str, str | None]:
    """The subentry data an appliance's details fill in (its device shows them)."""
    return {
        "model": details.model,
        "manufacturer": details.manufacturer,
        "serial_number": details.serial_number,
    }


class Appliances:
    """The hub's appliance subentries and devices, matched to the library's approvals and ledger."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, service: EstService) -> None:
        self.hass = hass
        self.entry = entry
        self._service = service
        self._known: dict[str, str] = {}  # subentry id -> appliance id, as last synced
        # Removed appliances not yet revoked: they stay marked, so that the next start revokes them.
        self._unrevoked: set[str] = set()

    def subentry_for(self, appliance_id: str) -> ConfigSubentry | None:
        """The appliance's subentry, if it has one."""
        return appliance_subentry(self.entry, appliance_id)

    def device(self, appliance_id: str) -> ApplianceDetails | None:
        """What the appliance's device shows now (kept after a revocation too), if it has one."""
        if (subentry := self.subentry_for(appliance_id)) is None:
            return None
        return ApplianceDetails(
            name=subentry.title,
            model=subentry.data.get("model"),
            manufacturer=subentry.data.get("manufacturer"),
            serial_number=subentry.data.get("serial_number"),
        )

    def has(self, appliance_id: str) -> bool:
        """Whether the appliance has a subentry."""
        return appliance_id in appliance_subentries(self.entry).values()

    @callback
    def ensure(self, appliance_id: str, details: ApplianceDetails, *, update: bool = False) -> None:
        """Add the appliance's subentry; one it has already keeps its details unless ``update``.

        An appliance paired again after a revocation, or with a new key, keeps its subentry and
        device; what its new request says about it (model, manufacturer, serial number) replaces
        what the device shows only when the owner chose so. The title stays: the owner may have
        renamed it.
        """
        if (subentry := self.subentry_for(appliance_id)) is not None:
            if update:
                self._update_details(subentry, details, fill_only=False)
            return
        self.hass.config_entries.async_add_subentry(
            self.entry,
            ConfigSubentry(
                data=MappingProxyType({CONF_APPLIANCE_ID: appliance_id, **device_details(details)}),
                subentry_type=SUBENTRY_APPLIANCE,
                title=details.name or appliance_id,
                unique_id=appliance_id,
            ),
        )

    @callback
    def certificate_recorded(self, record: CertificateRecord) -> None:
        """A pre-registered appliance's first certificate: the policy has learnt what it reports."""
        registration = self._service.policy.registration(record.appliance_id)
        subentry = self.subentry_for(record.appliance_id)
        if registration is not None and subentry is not None:
            self._update_details(subentry, registration.details, fill_only=True)

    def _update_details(
        self, subentry: ConfigSubentry, details: ApplianceDetails, *, fill_only: bool
    ) -> None:
        """Put what the appliance says about itself in its subentry and device.

        ``fill_only``: only where the subentry knows nothing yet (what a pre-registered appliance
        reports when it enrolls); otherwise the details replace the old ones (an appliance paired
        again may be another unit under the same id).
        """
        said = device_details(details)
        if fill_only:
            said = {key: value for key, value in said.items() if subentry.data.get(key) is None}
        if all(subentry.data.get(key) == value for key, value in said.items()):
            return
        data = {**subentry.data, **said}
        self.hass.config_entries.async_update_subentry(self.entry, subentry, data=data)
        registry = dr.async_get(self.hass)
        # The hub's own devices, searched (newer releases deprecate a lookup by identifier alone).
        identifier = (DOMAIN, subentry.data[CONF_APPLIANCE_ID])
        for device in dr.async_entries_for_config_entry(registry, self.entry.entry_id):
            if identifier in device.identifiers:
                registry.async_update_device(
                    device.id,
                    model=data.get("model"),
                    manufacturer=data.get("manufacturer"),
                    serial_number=data.get("serial_number"),
                )

    def reconcile(self) -> list[str]:
        """Match the approvals and certificates to the appliance subentries, at start.

        Returns the appliances to revoke. The update listener only sees removals while the hub is
        loaded. An appliance marked in the entry's data (CONF_APPLIANCES) whose subentry is gone was
        deleted while the hub was not running (a setup retry, a disabled hub): it is revoked. A
        registered appliance with neither subentry nor mark was approved just before Home Assistant
        died, before it wrote its config entries (the approval is written at once, the subentry a
        second later): its subentry is made again. Certificates of an appliance with neither
        registration nor subentry are revoked.
        """
        current = set(appliance_subentries(self.entry).values())
        marked = set(self.entry.data.get(CONF_APPLIANCES, current))
        policy, ledger = self._service.policy, self._service.ledger
        registered = {registration.appliance_id: registration for registration in policy.registrations()}
        certified = {
            appliance_id
            for appliance_id in ledger.appliances()
            if any(not record.revoked for record in ledger.for_appliance(appliance_id))
        }
        removed = []
        for appliance_id in sorted((set(registered) | certified) - current):
            if appliance_id in registered and appliance_id not in marked:
                _LOGGER.warning("Appliance %s lost its entry in a crash: adding it again", appliance_id)
                self.ensure(appliance_id, registered[appliance_id].details)
            else:
                _LOGGER.warning(
                    "Appliance %s was removed while the hub was stopped: revoking it", appliance_id
                )
                removed.append(appliance_id)
        self._unrevoked.update(removed)
        # What a pre-registered appliance reported is saved at once, its subentry a second later.
        for subentry_id, appliance_id in appliance_subentries(self.entry).items():
            if appliance_id in registered:
                self._update_details(
                    self.entry.subentries[subentry_id], registered[appliance_id].details, fill_only=True
                )
        self._mark()
        return removed

    @callback
    def remember(self) -> None:
        """Take the subentries as they are now as the ones the next :meth:`sync` compares with."""
        self._known = appliance_subentries(self.entry)

    @callback
    def sync(self) -> list[str]:
        """The entry's subentries changed: returns the appliances whose subentry the owner removed."""
        current = appliance_subentries(self.entry)
        removed = [appliance_id for sid, appliance_id in self._known.items() if sid not in current]
        self._known = current
        self._unrevoked.update(removed)
        self._mark()
        return removed

    @callback
    def revoked(self, appliance_id: str) -> None:
        """A removed appliance's revocation is saved: it need not be revoked at the next start."""
        self._unrevoked.discard(appliance_id)
        self._mark()

    @callback
    def remove(self, appliance_id: str) -> None:
        """Drop the appliance's subentry (its device is gone already)."""
        if (subentry := self.subentry_for(appliance_id)) is not None:
            self._known.pop(subentry.subentry_id, None)  # before: listeners may run eagerly
            self.hass.config_entries.async_remove_subentry(self.entry, subentry.subentry_id)

    @callback
    def _mark(self) -> None:
        """Note in the entry's data which appliances have a subentry (saved with the subentries).

        Removed ones whose revocation is not saved yet stay noted: the next start revokes them.
        """
        appliances = sorted(set(appliance_subentries(self.entry).values()) | self._unrevoked)
        if self.entry.data.get(CONF_APPLIANCES) != appliances:
            self.hass.config_entries.async_update_entry(
                self.entry, data={**self.entry.data, CONF_APPLIANCES: appliances}
            )
