"""Where appliances find the hub: its names and addresses, the mDNS announcement, the QR payload.

The EST listener's certificate covers the names and addresses Home Assistant has; when they change,
the hourly check raises the listener-names repair issue, whose fix issues a certificate for the new ones.
"""

from __future__ import annotations

import logging
import socket

from homeassistant.components import network, zeroconf
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceInfo

from .const import DOMAIN, ISSUE_LISTENER_NAMES
from .est import discovery
from .est.ca import household_ca_name
from .est.service import EstService
from .est.tls import ListenerNames
from .issues import raise_issue

_LOGGER = logging.getLogger(__name__)


class Announcement:
    """The hub's names, its mDNS registration on Home Assistant's shared zeroconf, its QR payload."""

    def __init__(self, hass: HomeAssistant, service: EstService, ca_name: str) -> None:
        self.hass = hass
        self._service = service
        self._ca_name = ca_name
        self._service_info: AsyncServiceInfo | None = None

    @property
    def host_name(self) -> str:
        """The machine's host name (the mDNS name is ``<host>.local``)."""
        return socket.gethostname().split(".")[0].lower() or "homeassistant"

    @property
    def service_info(self) -> AsyncServiceInfo | None:
        """The mDNS registration, while announced."""
        return self._service_info

    async def listener_names(self) -> ListenerNames:
        """The names and addresses Home Assistant has now (the listener certificate should cover them)."""
        addresses = await network.async_get_announce_addresses(self.hass)
        host = self.host_name
        return ListenerNames.from_hosts([f"{host}.local", host, *addresses, "localhost", "127.0.0.1"])

    def qr_payload(self) -> str:
        """What an appliance that scans a QR code needs: where to enroll and which CA to expect."""
        certified = self._service.config.names.certified()  # an address the certificate covers
        addresses = [a for a in certified.ip_addresses if not a.is_loopback]
        host = str(addresses[0]) if addresses else f"{self.host_name}.local"
        return discovery.qr_payload(host, self._service.port, self._service.ca.fingerprint)

    async def async_announce(self, names: ListenerNames) -> None:
        """Register the EST server over mDNS, or update the registration (keeping its name)."""
        info = discovery.service_info(
            household_ca_name(self._ca_name, max_bytes=discovery.MAX_INSTANCE_BYTES),
            port=self._service.port,
            ca_fingerprint=self._service.ca.fingerprint,
            server=f"{self.host_name}.local.",
            addresses=_announced_addresses(names),
        )
        aiozc = await zeroconf.async_get_async_instance(self.hass)
        if self._service_info is None:
            await aiozc.async_register_service(info, allow_name_change=True)
        else:
            info.name = self._service_info.name  # keep the name negotiated at registration
            await aiozc.async_update_service(info)
        self._service_info = info

    async def async_withdraw(self) -> None:
        """Unregister, and send the goodbye packets now (not from a task left behind by an unload)."""
        if (service_info := self._service_info) is not None:
            self._service_info = None
            aiozc = await zeroconf.async_get_async_instance(self.hass)
            goodbye = await aiozc.async_unregister_service(service_info)
            await goodbye

    async def async_check_names(self) -> None:
        """Compare the listener certificate and the announcement with Home Assistant's names now.

        Names it no longer covers raise the repair issue; covered again, it goes. A certificate near
        its end is renewed for the same names.
        """
        names = await self.listener_names()
        identity = self._service.listener_identity
        if not identity.covers(names):
            raise_issue(
                self.hass, ISSUE_LISTENER_NAMES, ir.IssueSeverity.WARNING, names=", ".join(names.all())
            )
        else:
            ir.async_delete_issue(self.hass, DOMAIN, ISSUE_LISTENER_NAMES)  # the addresses came back
            if identity.needs_renewal(self._service.ca, names, self._service.now()):
                try:
                    await self._service.update_names(names)
                except OSError as err:  # the listener keeps its certificate; the next check tries again
                    _LOGGER.warning("Could not save the EST server's renewed certificate: %s", err)
        announced = self._service_info
        if announced is not None and set(announced.parsed_addresses()) != set(_announced_addresses(names)):
            # Announce where Home Assistant is now: while the listener-names issue is open, appliances
            # that check the certificate for <host>.local, which it still covers, reach it there.
            try:
                await self.async_announce(names)
            except ZeroconfError as err:  # the old announcement stays; the next check tries again
                _LOGGER.warning("Could not announce the EST server at its new addresses: %r", err)

    async def async_reissue(self) -> None:
        """Cover the current names and addresses again (the repair issue's fix), and announce them."""
        names = await self.listener_names()
        await self._service.update_names(names)
        await self.async_announce(names)
        ir.async_delete_issue(self.hass, DOMAIN, ISSUE_LISTENER_NAMES)


def _announced_addresses(names: ListenerNames) -> list[str]:
    # Those the listener certificate covers: an appliance connecting to a public address Home
    # Assistant also has could not verify it there. Others only if it has no covered one (the
    # SRV record's <host>.local, which the certificate covers, still verifies).
    for addresses in (names.certified().ip_addresses, names.ip_addresses):
        if reachable := [str(a) for a in addresses if not a.is_loopback]:
            return reachable
    return [str(a) for a in names.ip_addresses]
