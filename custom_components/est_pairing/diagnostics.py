"""Diagnostics: the hub's state without keys, PINs or secret digests (reading it changes nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util

from .const import CONF_MANUFACTURER_CAS
from .coordinator import appliance_status

if TYPE_CHECKING:
    from .runtime import EstConfigEntry

TO_REDACT = {CONF_MANUFACTURER_CAS}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: EstConfigEntry) -> dict[str, Any]:
    """What a bug report needs: settings, CA and listener facts, appliances and certificates."""
    runtime = entry.runtime_data
    service = runtime.service
    identity = service.listener_identity
    now = dt_util.utcnow()
    return {
        "entry": {
            "data": dict(entry.data),
            "options": async_redact_data(dict(entry.options), TO_REDACT),
            "manufacturer_cas": len(runtime.settings.manufacturer_certificates()),
        },
        "ca": {
            "subject": service.ca.certificate.subject.rfc4514_string(),
            "fingerprint": service.ca.fingerprint,
            "not_valid_after": service.ca.not_valid_after.isoformat(),
        },
        "listener": {
            "port": service.port,
            "names": identity.names().all(),
            "not_valid_after": identity.certificate.not_valid_after_utc.isoformat(),
            "announced_as": announced.name if (announced := runtime.announcement.service_info) else None,
        },
        "approvals": {
            # False while the approvals on disk are behind those in memory (a full disk): lost at a restart.
            "saved": service.policy_save_error is None,
            "save_error": str(service.policy_save_error) if service.policy_save_error else None,
        },
        "pending": [
            {
                "appliance_id": pending.appliance_id,
                "kind": pending.kind.value,
                "key_type": pending.key_description,
                "key_fingerprint": pending.key_fingerprint,
                "address": pending.address,
            }
            for pending in service.policy.pending_requests()
        ],
        "appliances": [
            {
                "appliance_id": registration.appliance_id,
                "kind": registration.kind.value,
                "preregistered": registration.preregistered,
                "approved_keys": len(registration.keys),
                "status": appliance_status(
                    service, registration.appliance_id, now, runtime.settings.renewal_days
                ),
            }
            for registration in service.policy.registrations()
        ],
        "certificates": [
            {
                "appliance_id": record.appliance_id,
                "serial": format(record.serial_number, "x"),
                "not_after": record.expires.isoformat(),
                "revoked": record.revoked,
                "expired": record.expired(now),
            }
            for appliance_id in service.ledger.appliances()
            for record in service.ledger.for_appliance(appliance_id)
        ],
    }
