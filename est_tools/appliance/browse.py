"""How an appliance finds EST servers: browsing ``_est._tcp`` over mDNS, a QR payload, or a URL.

mDNS and QR codes only locate a server. The CA fingerprint an announcement carries (TXT ``cafp``)
may pick one server among several or justify a warning, but it is never a trust anchor: a LAN
attacker can answer mDNS (RFC 7030 §4.1.1, docs/appliance-profile.md). A QR code's ``sha256`` is
different: the owner scanned it from their own screen, so it is an out-of-band fingerprint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
import ipaddress
from typing import Final
from urllib.parse import SplitResult, parse_qs, urlsplit

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from custom_components.est_pairing.est.discovery import (
    PROFILE_VERSION,
    QR_SCHEME,
    SERVICE_TYPE,
    TXT_CA_FINGERPRINT,
    TXT_PATH,
    TXT_VERSION,
)
from custom_components.est_pairing.est.fingerprints import normalize_fingerprint
from custom_components.est_pairing.est.pake import MDNS_TXT_KEY
from custom_components.est_pairing.est.wire import EST_PATH

_RESOLVE_TIMEOUT_MS: Final = 3000


@dataclass(frozen=True, slots=True)
class EstServer:
    """One EST server: where to send requests, and the CA fingerprint it was found with (if any)."""

    name: str
    base_url: str  # https://host:port
    label: str | None = None
    ca_fingerprint: str | None = None  # from TXT cafp (a hint) or a QR code / the owner (out of band)
    out_of_band: bool = False  # ca_fingerprint came from the owner's screen (a QR code): trust it
    pake_methods: tuple[str, ...] = ()  # the PIN exchange methods its announcement lists (TXT pake)

    @property
    def expected_fingerprint(self) -> str | None:
        """The CA fingerprint to require: one from out of band; an announced one is only a hint."""
        return self.ca_fingerprint if self.out_of_band else None

    def __str__(self) -> str:
        return f"{self.name} at {self.base_url}" if self.name != self.base_url else self.base_url


def server_from_qr_payload(payload: str) -> EstServer:
    """Where to enroll and which CA to expect, from a scanned QR payload; ValueError if malformed."""
    parts = urlsplit(payload.strip())
    if parts.scheme != QR_SCHEME or not parts.hostname or parts.port is None:
        raise ValueError(f"a QR payload looks like {QR_SCHEME}://HOST:PORT{EST_PATH}?sha256=FINGERPRINT")
    fingerprints = parse_qs(parts.query).get("sha256", [])
    if len(fingerprints) != 1:
        raise ValueError("the QR payload carries no single sha256= CA fingerprint")
    base_url = f"https://{parts.netloc}"
    return EstServer(
        base_url, base_url, _label(parts.path), normalize_fingerprint(fingerprints[0]), out_of_band=True
    )


def server_from_url(url: str) -> EstServer:
    """``https://HOST:PORT`` (optionally followed by the EST path and a label); ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname or not _port_is_valid(parts):
        raise ValueError("the server URL looks like https://HOST:PORT")
    base_url = f"https://{parts.netloc}"
    return EstServer(base_url, base_url, _label(parts.path))


def _port_is_valid(parts: SplitResult) -> bool:
    """No port, or a number 0-65535 (urllib reads it only when asked, and refuses others then)."""
    try:
        _ = parts.port
    except ValueError:
        return False
    return True


def server_from_service_info(info: AsyncServiceInfo) -> EstServer | None:
    """The server an announcement describes; None if it is of another profile version or unreachable."""
    properties = {key: value or "" for key, value in info.decoded_properties.items()}
    if properties.get(TXT_VERSION, PROFILE_VERSION) != PROFILE_VERSION or info.port is None:
        return None
    host = _reachable_address(info.parsed_addresses())
    if host is None:
        return None
    try:
        label = _label(properties.get(TXT_PATH, EST_PATH))
    except ValueError:
        return None
    try:
        fingerprint: str | None = normalize_fingerprint(properties.get(TXT_CA_FINGERPRINT, ""))
    except ValueError:
        fingerprint = None
    name = info.name.removesuffix(f".{SERVICE_TYPE}")
    host = f"[{host}]" if ":" in host else host
    methods = tuple(method for method in properties.get(MDNS_TXT_KEY, "").split(",") if method)
    return EstServer(name, f"https://{host}:{info.port}", label, fingerprint, pake_methods=methods)


async def browse(
    *, within: float = 10.0, settle: float = 1.0, aiozc: AsyncZeroconf | None = None
) -> list[EstServer]:
    """EST servers announced on the local network, sorted by name.

    Returns ``settle`` seconds after the first server resolves (others answer within a few
    milliseconds of it), or after ``within`` seconds with what was found, possibly nothing.
    """
    zeroconf = aiozc or AsyncZeroconf(ip_version=IPVersion.V4Only)
    announced: asyncio.Queue[str] = asyncio.Queue()

    def on_change(zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            announced.put_nowait(name)

    browser = AsyncServiceBrowser(zeroconf.zeroconf, SERVICE_TYPE, handlers=[on_change])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    found: dict[str, EstServer] = {}
    try:
        while (remaining := deadline - loop.time()) > 0:
            try:
                name = await asyncio.wait_for(announced.get(), remaining)
            except TimeoutError:
                break
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(zeroconf.zeroconf, _RESOLVE_TIMEOUT_MS):
                continue
            if (server := server_from_service_info(info)) is not None:
                found[name] = server
                deadline = min(deadline, loop.time() + settle)
    finally:
        await browser.async_cancel()
        if aiozc is None:
            await zeroconf.async_close()
    return sorted(found.values(), key=lambda server: (server.name, server.base_url))


def candidate_servers(servers: Sequence[EstServer], expected_fingerprint: str | None) -> list[EstServer]:
    """The servers to try, in order; each is verified against the expected CA before it is used.

    Anyone on the LAN can announce anything, the expected CA's fingerprint included: with an expected
    CA, those announcing it come first and the rest follow (the first that proves to hold the CA
    wins). Without one, only a lone server is a candidate: which of several to trust on first use
    is the owner's choice.
    """
    if expected_fingerprint is None:
        return list(servers) if len(servers) == 1 else []
    announcing = [server for server in servers if server.ca_fingerprint == expected_fingerprint]
    return announcing + [server for server in servers if server not in announcing]


def _label(path: str) -> str | None:
    """``/.well-known/est`` -> None, ``/.well-known/est/appliance`` -> ``appliance``."""
    path = path.rstrip("/")
    if path in {"", EST_PATH}:
        return None
    label = path.removeprefix(f"{EST_PATH}/")
    if label == path or "/" in label:
        raise ValueError(f"the EST path is {EST_PATH} or {EST_PATH}/LABEL")
    return label


def _reachable_address(addresses: Sequence[str]) -> str | None:
    """IPv4 first (every LAN has it), then IPv6 that needs no zone index."""
    parsed = [ipaddress.ip_address(address) for address in addresses]
    for address in parsed:
        if address.version == 4:
            return str(address)
    for address in parsed:
        if not address.is_link_local:
            return str(address)
    return None
