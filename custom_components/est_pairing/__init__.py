"""EST Appliance Pairing: a household CA that personalizes appliances over EST (RFC 7030)."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

type EstConfigEntry = ConfigEntry[None]


async def async_setup_entry(hass: HomeAssistant, entry: EstConfigEntry) -> bool:
    """Set up the household CA hub."""
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EstConfigEntry) -> bool:
    """Unload the hub."""
    return True
