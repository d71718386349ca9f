"""How a hub announces its EST server: the ``_est._tcp`` mDNS service, its TXT keys, the QR payload.

The profile's names and keys are here for both sides; appliances find servers with
``est_tools.appliance.browse``, which says what an announced CA fingerprint is worth (a hint only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from zeroconf.asyncio import AsyncServiceInfo

from .pake import MDNS_TXT_KEY
from .srp6a import METHOD
from .wire import EST_PATH

SERVICE_TYPE: Final = "_est._tcp.local."
TXT_PATH: Final = "path"  # the EST path prefix, /.well-known/est (with a label: /.well-known/est/<label>)
TXT_CA_FINGERPRINT: Final = "cafp"  # SHA-256 of the CA certificate, hex: a hint, never a trust anchor
TXT_VERSION: Final = "ver"  # this TXT profile's version; browsers skip versions they do not know
PROFILE_VERSION: Final = "1"
# An instance name is one DNS label (63 bytes of UTF-8; zeroconf refuses longer), with room for the
# "-2", "-3", ... zeroconf appends when another server already announces the name.
MAX_INSTANCE_BYTES: Final = 63 - len("-99")
QR_SCHEME: Final = "est"


def txt_properties(ca_fingerprint: str) -> dict[str, str]:
    """The TXT record of an announcement (every value well under the 255-byte limit).

    ``pake`` lists the PIN exchange methods the listener speaks: an appliance with a PIN that sees it
    never sends the PIN another way.
    """
    return {
        TXT_PATH: EST_PATH,
        TXT_CA_FINGERPRINT: ca_fingerprint,
        TXT_VERSION: PROFILE_VERSION,
        MDNS_TXT_KEY: METHOD,
    }


def service_info(
    instance: str, *, port: int, ca_fingerprint: str, server: str, addresses: Sequence[str]
) -> AsyncServiceInfo:
    """The ``_est._tcp`` registration for a server that runs an EST listener on ``port``."""
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{instance}.{SERVICE_TYPE}",
        port=port,
        properties=txt_properties(ca_fingerprint),
        server=server,
        parsed_addresses=list(addresses),
    )


def qr_payload(host: str, port: int, ca_fingerprint: str) -> str:
    """``est://HOST:PORT/.well-known/est?sha256=<CA fingerprint>``: what a hub shows as a QR code."""
    host = f"[{host}]" if ":" in host else host
    return f"{QR_SCHEME}://{host}:{port}{EST_PATH}?sha256={ca_fingerprint}"
