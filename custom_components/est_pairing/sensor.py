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

from .entity import ApplianceEntity, HubEntity, async_add_appliance_entities
from .runtime import EstRuntime

if TYPE_CHECKING:
    from . import EstConfigEntry

PARALLEL_UPDATES = 0
CERTIFICATE_STATES = ["awaiting_enrollment", "valid", "expiring", "expired", "revoked"]


@dataclass(frozen=True, kw_only=True)
class ApplianceSensorDescription(SensorEntityDescription):
    """How an appliance sensor reads its value."""

    value: Callable[[EstRuntime, str], datetime | str | None]


@dataclass(frozen=True, kw_only=True)
class HubSensorDescription(SensorEntityDescription):
    """How a hub sensor reads its value."""

    value: Callable[[EstRuntime], datetime | str | int | None]


def _expiry(runtime: EstRuntime, appliance_id: str) -> datetime | None:
    record = runtime.latest_certificate(appliance_id)
    return record.expires if record is not None else None


APPLIANCE_SENSORS = (
    ApplianceSensorDescription(
        key="certificate_expiry",
        translation_key="certificate_expiry",
        device_class=SensorDeviceClass.TIMESTAMP,
        value=_expiry,
    ),
    ApplianceSensorDescription(
        key="certificate_status",
        translation_key="certificate_status",
        device_class=SensorDeviceClass.ENUM,
        options=CERTIFICATE_STATES,
        value=lambda runtime, appliance_id: runtime.status(appliance_id),
    ),
)

HUB_SENSORS = (
    HubSensorDescription(
        key="ca_expiry",
        translation_key="ca_expiry",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda runtime: runtime.service.ca.not_valid_after,
    ),
    HubSensorDescription(
        key="pending_requests",
        translation_key="pending_requests",
        state_class=SensorStateClass.MEASUREMENT,
        value=lambda runtime: len(runtime.service.policy.pending_requests()),
    ),
    HubSensorDescription(
        key="ca_fingerprint",
        translation_key="ca_fingerprint",
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda runtime: runtime.formatted_fingerprint(),
    ),
    HubSensorDescription(
        key="qr_payload",
        translation_key="qr_payload",
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda runtime: runtime.qr_payload,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: EstConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Hub sensors now; appliance sensors for every appliance, now and as they are approved."""
    runtime = entry.runtime_data
    async_add_entities(HubSensor(runtime, description) for description in HUB_SENSORS)
    async_add_appliance_entities(
        entry,
        async_add_entities,
        lambda subentry: [ApplianceSensor(runtime, subentry, d) for d in APPLIANCE_SENSORS],
    )


class HubSensor(HubEntity, SensorEntity):
    """A sensor of the household CA."""

    entity_description: HubSensorDescription

    @property
    def native_value(self) -> datetime | str | int | None:
        """Read from the runtime."""
        return self.entity_description.value(self.runtime)


class ApplianceSensor(ApplianceEntity, SensorEntity):
    """A sensor of one appliance's certificate."""

    entity_description: ApplianceSensorDescription

    @property
    def native_value(self) -> datetime | str | None:
        """Read from the ledger."""
        return self.entity_description.value(self.runtime, self.appliance_id)
