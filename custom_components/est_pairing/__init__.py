"""EST Appliance Pairing: a household CA that personalizes appliances over EST (RFC 7030)."""

from __future__ import annotations

from homeassistant.config_entries import (
    SIGNAL_CONFIG_ENTRY_CHANGED,
    SOURCE_IGNORE,
    ConfigEntry,
    ConfigEntryChange,
    ConfigEntryState,
)
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import (
    config_validation as cv,
    device_registry as dr,
    issue_registry as ir,
)
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.typing import ConfigType

from .appliances import remove_appliance_subentry
from .const import DOMAIN, ISSUE_PORT_UNAVAILABLE
from .est.errors import EstError
from .exceptions import translated
from .issues import ISSUES
from .runtime import EstConfigEntry, EstRuntime, HubSettings
from .services import async_setup_services
from .store import DocumentStore, LedgerJournal

PLATFORMS: list[Platform] = [Platform.BUTTON, Platform.IMAGE, Platform.SENSOR]
CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions (they find the hub when called)."""
    async_setup_services(hass)

    @callback
    def entry_changed(change: ConfigEntryChange, entry: ConfigEntry) -> None:
        # A hub waiting to retry that the owner disables is unloaded without async_unload_entry:
        # its "keeps retrying" issue would outlive the retries. Ignored appliances are entries of
        # this domain too (never loaded): theirs say nothing about the hub.
        if (
            entry.domain == DOMAIN
            and entry.source != SOURCE_IGNORE
            and entry.state is ConfigEntryState.NOT_LOADED
        ):
            ir.async_delete_issue(hass, DOMAIN, ISSUE_PORT_UNAVAILABLE)

    async_dispatcher_connect(hass, SIGNAL_CONFIG_ENTRY_CHANGED, entry_changed)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: EstConfigEntry) -> bool:
    """Load or create the household CA, start the EST listener and announce it."""
    runtime = EstRuntime(hass, entry, HubSettings.from_entry(entry))
    try:
        await runtime.async_start()
        entry.runtime_data = runtime
        await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    except BaseException:
        await runtime.async_stop()  # free the port, or the next attempt finds it in use
        raise
    # Registered only now: Home Assistant 2025.4 runs no on_unload callbacks after a setup error.
    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    # Home Assistant does not unload entries when it stops: free the port, write pending approvals.
    entry.async_on_unload(hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, runtime.async_shutdown))
    return True


async def async_unload_entry(hass: HomeAssistant, entry: EstConfigEntry) -> bool:
    """Stop the listener and withdraw the announcement."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        await entry.runtime_data.async_stop()
    return unloaded


async def _async_entry_updated(hass: HomeAssistant, entry: EstConfigEntry) -> None:
    """Reload for new settings; an added or removed appliance needs no reload."""
    if HubSettings.from_entry(entry) != entry.runtime_data.settings:
        await hass.config_entries.async_reload(entry.entry_id)
    else:
        await entry.runtime_data.async_sync_subentries()


async def async_remove_entry(hass: HomeAssistant, entry: EstConfigEntry) -> None:
    """Deleting the hub deletes the household CA, approvals and ledger from .storage, and its issues.

    The appliances the owner ignored are forgotten too (entries of this domain, one per appliance):
    a hub added again starts over with a new CA, and would otherwise refuse them unasked.
    """
    for issue_id in ISSUES:
        ir.async_delete_issue(hass, DOMAIN, issue_id)
    for ignored in hass.config_entries.async_entries(DOMAIN, include_ignore=True):
        if ignored.source == SOURCE_IGNORE:
            await hass.config_entries.async_remove(ignored.entry_id)
    await DocumentStore(hass, entry.entry_id, "ca").remove()
    await DocumentStore(hass, entry.entry_id, "approvals").remove()
    await LedgerJournal(hass, entry.entry_id).remove()


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: EstConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Removing an appliance's device revokes its certificates; the hub itself stays."""
    appliance_ids = [key for domain, key in device.identifiers if domain == DOMAIN]
    if not appliance_ids or appliance_ids[0] == entry.entry_id:
        return False
    if entry.state is not ConfigEntryState.LOADED:
        # Disabled or waiting to retry: the hub revokes appliances whose subentry is gone at start.
        # After the device registry has finished removing the device, drop the subentry.
        hass.loop.call_soon(remove_appliance_subentry, hass, entry, appliance_ids[0])
        return True
    try:
        await entry.runtime_data.decisions.async_remove_appliance(appliance_ids[0])
    except EstError as err:
        raise translated(err) from err
    return True
