"""Sensors: each appliance's certificate expiry and status; the CA's expiry, fingerprint and queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import ApplianceSnapshot, HubSnapshot
from .entity import ApplianceEntity, HubEntity, async_add_appliance_entities
from .est.fingerprints import format_fingerprint

if TYPE_CHECKING:
    from .runtime import EstConfigEntry

PARALLEL_UPDATES = 0
CERTIFICATE_STATES = ["awaiting_enrollment", "valid", "expiring", "expired", "revoked"]


@dataclass(frozen=True, kw_only=True)
class ApplianceSensorDescription(SensorEntityDescription):
    """How an appliance sensor reads its value from the appliance's snapshot."""

    value: Callable[[ApplianceSnapshot], datetime | str | None]


@dataclass(frozen=True, kw_only=True)
class HubSensorDescription(SensorEntityDescription):
    """How a hub sensor reads its value from the hub's snapshot."""

    value: Callable[[HubSnapshot], datetime | str | int | None]


APPLIANCE_SENSORS = (
    ApplianceSensorDescription(
        key="certificate_expiry",
        translation_key="certificate_expiry",
        device_class=SensorDeviceClass.TIMESTAMP,
        value=lambda appliance: appliance.expires,
    ),
    ApplianceSensorDescription(
        key="certificate_status",
        translation_key="certificate_status",
        device_class=SensorDeviceClass.ENUM,
        options=CERTIFICATE_STATES,
        value=lambda appliance: appliance.status,
    ),
)

HUB_SENSORS = (
    HubSensorDescription(
        key="ca_expiry",
        translation_key="ca_expiry",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda hub: hub.ca_expires,
    ),
    HubSensorDescription(
        key="pending_requests",
        translation_key="pending_requests",
        state_class=SensorStateClass.MEASUREMENT,
        value=lambda hub: hub.pending_requests,
    ),
    HubSensorDescription(
        key="ca_fingerprint",
        translation_key="ca_fingerprint",
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda hub: format_fingerprint(hub.ca_fingerprint),
    ),
    HubSensorDescription(
        key="qr_payload",
        translation_key="qr_payload",
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda hub: hub.qr_payload,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: EstConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Hub sensors now; appliance sensors for every appliance, now and as they are approved."""
    async_add_entities(HubSensor(entry, description) for description in HUB_SENSORS)
    async_add_appliance_entities(
        entry,
        async_add_entities,
        lambda subentry: [ApplianceSensor(entry, subentry, d) for d in APPLIANCE_SENSORS],
    )


class HubSensor(HubEntity, SensorEntity):
    """A sensor of the household CA."""

    entity_description: HubSensorDescription

    @property
    def native_value(self) -> datetime | str | int | None:
        """Read from the snapshot."""
        return self.entity_description.value(self.coordinator.data)


class ApplianceSensor(ApplianceEntity, SensorEntity):
    """A sensor of one appliance's certificate."""

    entity_description: ApplianceSensorDescription

    @property
    def native_value(self) -> datetime | str | None:
        """Read from the appliance's snapshot."""
        if (appliance := self.appliance) is None:
            return None
        return self.entity_description.value(appliance)
