"""Config flow: create the household CA hub."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
import voluptuous as vol

from .const import CONF_CA_NAME, CONF_PORT, DEFAULT_PORT, DOMAIN


class EstPairingConfigFlow(ConfigFlow, domain=DOMAIN):
    """Create the hub: name the household CA and pick the EST port."""

    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the CA name and port."""
        await self.async_set_unique_id(DOMAIN)
        self._abort_if_unique_id_configured()
        if user_input is not None:
            return self.async_create_entry(title=user_input[CONF_CA_NAME], data=user_input)
        schema = vol.Schema(
            {
                vol.Required(CONF_CA_NAME, default=self.hass.config.location_name): str,
                vol.Required(CONF_PORT, default=DEFAULT_PORT): int,
            }
        )
        return self.async_show_form(step_id="user", data_schema=schema)
