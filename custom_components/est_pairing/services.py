"""Actions: revoke an appliance's certificate, pre-register an appliance, export the CA."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.service import async_register_admin_service
import voluptuous as vol

from .const import CONF_APPLIANCE_ID, CONF_NAME, CONF_PIN, DOMAIN, MIN_PIN_LENGTH
from .est.errors import EstError
from .est.limits import MAX_SECRET_LENGTH
from .exceptions import translated
from .runtime import EstRuntime, hub_runtime

SERVICE_REVOKE = "revoke_certificate"
SERVICE_PREREGISTER = "preregister_appliance"
SERVICE_EXPORT_CA = "export_ca"
ATTR_DEVICE_ID = "device_id"

EXPORT_CA_SCHEMA = vol.Schema({})  # no fields: an unknown one is refused rather than ignored
REVOKE_SCHEMA = vol.Schema({vol.Required(ATTR_DEVICE_ID): cv.string})
PREREGISTER_SCHEMA = vol.Schema(
    {
        vol.Required(CONF_APPLIANCE_ID): cv.string,
        vol.Required(CONF_PIN): vol.All(cv.string, vol.Length(min=MIN_PIN_LENGTH, max=MAX_SECRET_LENGTH)),
        vol.Optional(CONF_NAME): cv.string,
    }
)


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""

    async def revoke(call: ServiceCall) -> None:
        runtime = _runtime(hass)
        device = dr.async_get(hass).async_get(call.data[ATTR_DEVICE_ID])
        appliance_ids = [key for domain, key in (device.identifiers if device else ()) if domain == DOMAIN]
        if not appliance_ids or appliance_ids[0] == runtime.entry.entry_id:
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="not_an_appliance")
        try:
            await runtime.decisions.async_revoke(appliance_ids[0])
        except EstError as err:
            raise translated(err) from err

    async def preregister(call: ServiceCall) -> None:
        runtime = _runtime(hass)
        try:
            runtime.decisions.preregister(
                call.data[CONF_APPLIANCE_ID], call.data[CONF_PIN], call.data.get(CONF_NAME)
            )
        except EstError as err:
            raise translated(err) from err

    async def export_ca(call: ServiceCall) -> ServiceResponse:
        runtime = _runtime(hass)
        hub = runtime.coordinator.data
        response: dict[str, Any] = {
            "certificate": runtime.service.ca.certificate_pem.decode(),
            "fingerprint": hub.ca_fingerprint,
            "qr_payload": hub.qr_payload,
            "expires": hub.ca_expires.isoformat(),
        }
        return response

    # Who the household CA trusts is the owner's decision: only administrators may change it. Home
    # Assistant checks no permission on an integration's own actions, so these must ask for it.
    async_register_admin_service(hass, DOMAIN, SERVICE_REVOKE, revoke, schema=REVOKE_SCHEMA)
    async_register_admin_service(hass, DOMAIN, SERVICE_PREREGISTER, preregister, schema=PREREGISTER_SCHEMA)
    # Open to every user: it returns only public data, what /cacerts serves to anyone on the network
    # and the hub's sensors show to every user (never the CA key).
    hass.services.async_register(
        DOMAIN, SERVICE_EXPORT_CA, export_ca, schema=EXPORT_CA_SCHEMA, supports_response=SupportsResponse.ONLY
    )


def _runtime(hass: HomeAssistant) -> EstRuntime:
    if (runtime := hub_runtime(hass)) is None:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="not_loaded")
    return runtime
