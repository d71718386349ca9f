"""Base entities: the hub device (the household CA) and one device per appliance."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from homeassistant.config_entries import ConfigSubentry
from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import CONF_APPLIANCE_ID, DOMAIN, NAME, SUBENTRY_APPLIANCE
from .est.ca import household_ca_name
from .runtime import EstRuntime

if TYPE_CHECKING:
    from . import EstConfigEntry


class EstEntity(Entity):
    """Pushed by the runtime's dispatcher signals; never polled."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, runtime: EstRuntime, description: EntityDescription) -> None:
        self.runtime = runtime
        self.entity_description = description

    @callback
    def _refresh(self, *_args: object) -> None:
        self.async_write_ha_state()


class HubEntity(EstEntity):
    """An entity of the hub device."""

    def __init__(self, runtime: EstRuntime, description: EntityDescription) -> None:
        super().__init__(runtime, description)
        entry = runtime.entry
        self._attr_unique_id = f"{entry.entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name=household_ca_name(runtime.settings.ca_name),
            manufacturer=NAME,
            model="Household certificate authority",
        )

    async def async_added_to_hass(self) -> None:
        """Follow pending requests and the periodic refresh."""
        self.async_on_remove(async_dispatcher_connect(self.hass, self.runtime.signal_hub, self._refresh))


class ApplianceEntity(EstEntity):
    """An entity of an appliance device (one config subentry)."""

    def __init__(self, runtime: EstRuntime, subentry: ConfigSubentry, description: EntityDescription) -> None:
        super().__init__(runtime, description)
        self.appliance_id: str = subentry.data[CONF_APPLIANCE_ID]
        self._attr_unique_id = f"{runtime.entry.entry_id}_{self.appliance_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, self.appliance_id)},
            name=subentry.title,
            manufacturer=subentry.data.get("manufacturer"),
            model=subentry.data.get("model"),
            serial_number=subentry.data.get("serial_number"),
        )

    async def async_added_to_hass(self) -> None:
        """Follow the ledger: re-enrollment updates the entity without a reload."""
        self.async_on_remove(
            async_dispatcher_connect(self.hass, self.runtime.signal_appliance, self._appliance_changed)
        )

    @callback
    def _appliance_changed(self, appliance_id: str | None) -> None:
        if appliance_id in (None, self.appliance_id):
            self.async_write_ha_state()


def async_add_appliance_entities(
    entry: EstConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    entities_for: Callable[[ConfigSubentry], Iterable[Entity]],
) -> None:
    """Add each appliance's entities now, and for every appliance approved while loaded."""
    runtime = entry.runtime_data

    @callback
    def add(subentry_id: str) -> None:
        async_add_entities(entities_for(entry.subentries[subentry_id]), config_subentry_id=subentry_id)

    for subentry_id, subentry in entry.subentries.items():
        if subentry.subentry_type == SUBENTRY_APPLIANCE:
            add(subentry_id)
    entry.async_on_unload(async_dispatcher_connect(runtime.hass, runtime.signal_new_appliance, add))
