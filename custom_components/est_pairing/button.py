"""The revoke button of each appliance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import ApplianceEntity, async_add_appliance_entities
from .est.errors import EstError
from .exceptions import translated

if TYPE_CHECKING:
    from .runtime import EstConfigEntry

PARALLEL_UPDATES = 1
REVOKE = ButtonEntityDescription(
    key="revoke", translation_key="revoke", entity_category=EntityCategory.CONFIG
)


async def async_setup_entry(
    hass: HomeAssistant, entry: EstConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """A revoke button for every appliance, now and as they are approved."""
    async_add_appliance_entities(
        entry, async_add_entities, lambda subentry: [RevokeButton(entry, subentry, REVOKE)]
    )


class RevokeButton(ApplianceEntity, ButtonEntity):
    """Revoke the appliance's certificates; it cannot re-enroll until paired again.

    Left to every user Home Assistant lets operate the appliance's entities (not read-only users),
    unlike the admin-only actions: such a user already controls the appliance itself, and revoking
    only takes trust away, never grants it; the owner pairs the appliance again to undo it.
    """

    def __init__(
        self, entry: EstConfigEntry, subentry: ConfigSubentry, description: EntityDescription
    ) -> None:
        super().__init__(entry, subentry, description)
        self._decisions = entry.runtime_data.decisions

    async def async_press(self) -> None:
        """Revoke now."""
        try:
            await self._decisions.async_revoke(self.appliance_id)
        except EstError as err:
            raise translated(err) from err
