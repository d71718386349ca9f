"""The hub's enrollment QR code as a picture, for owners and appliances that scan one."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
import io
from typing import TYPE_CHECKING

from homeassistant.components.image import ImageEntity, ImageEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util
import segno

from .entity import HubEntity

if TYPE_CHECKING:
    from .runtime import EstConfigEntry

PARALLEL_UPDATES = 0
QR_CODE = ImageEntityDescription(key="qr_code", translation_key="qr_code")
PNG_SCALE = 8  # pixels per module: about 400 px square, sharp on a phone held at arm's length
QUIET_ZONE = 4  # modules of white border, as ISO/IEC 18004 asks for


@lru_cache(maxsize=4)
def qr_png(payload: str) -> bytes:
    """The payload as a QR code, PNG (error correction M or better: a screen has glare)."""
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="png", scale=PNG_SCALE, border=QUIET_ZONE)
    return buffer.getvalue()


async def async_setup_entry(
    hass: HomeAssistant, entry: EstConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """The hub's QR code."""
    async_add_entities([EnrollmentQrCode(hass, entry)])


class EnrollmentQrCode(HubEntity, ImageEntity):
    """The enrollment QR payload (where to enroll, which CA to expect), drawn as a QR code."""

    _attr_content_type = "image/png"

    def __init__(self, hass: HomeAssistant, entry: EstConfigEntry) -> None:
        HubEntity.__init__(self, entry, QR_CODE)
        ImageEntity.__init__(self, hass)
        self._payload = self.coordinator.data.qr_payload
        self._attr_image_last_updated = dt_util.utcnow()

    async def async_image(self) -> bytes | None:
        """Drawn in the executor (a few milliseconds), once per payload."""
        return await self.hass.async_add_executor_job(qr_png, self._payload)

    @callback
    def _handle_coordinator_update(self) -> None:
        if (payload := self.coordinator.data.qr_payload) != self._payload:  # a new address (or port, or CA)
            self._payload = payload
            self._attr_image_last_updated = _later_than(self._attr_image_last_updated)
        super()._handle_coordinator_update()


def _later_than(previous: datetime | None) -> datetime:
    """Now, or just after ``previous``: the state must change for the frontend to fetch the picture."""
    now = dt_util.utcnow()
    return now if previous is None else max(now, previous + timedelta(microseconds=1))
