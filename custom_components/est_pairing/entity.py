"""Base entities: the hub device (the household CA) and one device per appliance, reading the snapshot."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import CONF_APPLIANCE_ID, CONF_CA_NAME, DOMAIN, NAME
from .coordinator import ApplianceSnapshot, EstCoordinator
from .est.ca import household_ca_name

if TYPE_CHECKING:
    from .runtime import EstConfigEntry


class HubEntity(CoordinatorEntity[EstCoordinator]):
    """An entity of the hub device."""

    _attr_has_entity_name = True

    def __init__(self, entry: EstConfigEntry, description: EntityDescription) -> None:
        super().__init__(entry.runtime_data.coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=household_ca_name(entry.data[CONF_CA_NAME]),
            manufacturer=NAME,
            model="Household certificate authority",
        )


class ApplianceEntity(CoordinatorEntity[EstCoordinator]):
    """An entity of an appliance device (one config subentry)."""

    _attr_has_entity_name = True

    def __init__(
        self, entry: EstConfigEntry, subentry: ConfigSubentry, description: EntityDescription
    ) -> None:
        super().__init__(entry.runtime_data.coordinator)
        self.entity_description = description
        self.appliance_id: str = subentry.data[CONF_APPLIANCE_ID]
        self._attr_unique_id = f"{entry.entry_id}_{self.appliance_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, self.appliance_id)},
            name=subentry.title,
            manufacturer=subentry.data.get("manufacturer"),
            model=subentry.data.get("model"),
            serial_number=subentry.data.get("serial_number"),
        )

    @property
    def appliance(self) -> ApplianceSnapshot | None:
        """The appliance in the current snapshot (None once its subentry is gone)."""
        return self.coordinator.data.appliances.get(self.appliance_id)


def async_add_appliance_entities(
    entry: EstConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    entities_for: Callable[[ConfigSubentry], Iterable[Entity]],
) -> None:
    """Add each appliance's entities now, and for every appliance that appears in a later snapshot."""
    coordinator = entry.runtime_data.coordinator
    added: set[str] = set()

    @callback
    def add_new_appliances() -> None:
        for appliance in coordinator.data.appliances.values():
            if appliance.subentry_id not in added and appliance.subentry_id in entry.subentries:
                added.add(appliance.subentry_id)
                subentry = entry.subentries[appliance.subentry_id]
                async_add_entities(entities_for(subentry), config_subentry_id=appliance.subentry_id)

    add_new_appliances()
    entry.async_on_unload(coordinator.async_add_listener(add_new_appliances))
