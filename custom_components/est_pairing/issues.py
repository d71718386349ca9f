"""The repair issues the hub raises and clears: port, storage, CA expiry, listener names."""

from __future__ import annotations

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from .const import (
    CA_EXPIRY_WARNING,
    DOMAIN,
    ISSUE_CA_EXPIRING,
    ISSUE_CA_MISSING,
    ISSUE_LISTENER_NAMES,
    ISSUE_PORT_UNAVAILABLE,
    ISSUE_STORAGE_UNWRITABLE,
)
from .est.ca import HouseholdCA

ISSUES = (
    ISSUE_PORT_UNAVAILABLE,
    ISSUE_CA_EXPIRING,
    ISSUE_CA_MISSING,
    ISSUE_LISTENER_NAMES,
    ISSUE_STORAGE_UNWRITABLE,
)


@callback
def raise_issue(hass: HomeAssistant, issue_id: str, severity: ir.IssueSeverity, **placeholders: str) -> None:
    """A repair issue whose translation key is its id; only the listener names one is fixable."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id,
        is_fixable=issue_id == ISSUE_LISTENER_NAMES,
        severity=severity,
        translation_key=issue_id,
        translation_placeholders=placeholders,
    )


@callback
def check_ca_expiry(hass: HomeAssistant, ca: HouseholdCA) -> None:
    """Warn a year before the household CA expires: no appliance certificate outlives it."""
    expires = ca.not_valid_after
    if expires - dt_util.utcnow() < CA_EXPIRY_WARNING:
        raise_issue(hass, ISSUE_CA_EXPIRING, ir.IssueSeverity.WARNING, expires=expires.date().isoformat())
    else:
        ir.async_delete_issue(hass, DOMAIN, ISSUE_CA_EXPIRING)


@callback
def approvals_saved(hass: HomeAssistant, error: OSError | None) -> None:
    """While the approvals on disk are behind those in memory, the owner is told (they would be lost)."""
    if error is None:
        ir.async_delete_issue(hass, DOMAIN, ISSUE_STORAGE_UNWRITABLE)
    else:
        raise_issue(hass, ISSUE_STORAGE_UNWRITABLE, ir.IssueSeverity.ERROR, error=str(error))
