"""The home network's names and addresses: what certificates may name, and the household CA permits.

A household CA is trusted by phones and laptops too, so what it signs must never pass for a public
site: its certificates name appliances and the hub on the home network only, and a new CA carries a
name constraint (RFC 5280 §4.2.1.10) that makes any other name fail verification, even one signed
with a stolen CA key.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from cryptography import x509

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MDNS_SUFFIX: Final = ".local"
# mDNS (RFC 6762) and the domain set aside for home networks (RFC 8375).
HOME_DOMAINS: Final = ("local", "home.arpa")
HOME_NETWORKS: Final = tuple(
    ipaddress.ip_network(network)
    for network in (
        "127.0.0.0/8",  # loopback
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",  # link-local (RFC 3927)
        "100.64.0.0/10",  # shared address space (RFC 6598): carrier NAT, overlay VPNs such as Tailscale
        "::1/128",  # loopback
        "fc00::/7",  # unique local addresses (RFC 4193)
        "fe80::/10",  # link-local
    )
)
# RFC 1123 §2.1 labels: 1-63 letters, digits and hyphens, no hyphen at either end. Underscores too,
# as mDNS (RFC 6762 §16) names and the TLS stacks that check them (OpenSSL, Go, rustls) accept them.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_MAX_HOST_NAME = 253


def is_host_name(name: str) -> bool:
    """Whether ``name`` may be a certificate's dNSName (RFC 5280 §4.2.1.6: a host name, RFC 1123).

    No empty or over-long label, no hyphen at a label's edge, and a last label that is not all
    digits, so that ``192.168.1.7`` is never a DNS name.
    """
    labels = name.split(".")
    return (
        len(name) <= _MAX_HOST_NAME
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_home_name(name: str) -> bool:
    """Whether a DNS name is a host name under a home-network domain (``oven.local``, never ``local``)."""
    folded = name.casefold()
    return is_host_name(folded) and any(folded.endswith(f".{domain}") for domain in HOME_DOMAINS)


def is_home_address(address: IPAddress) -> bool:
    """Whether an address is one a home network uses (private, link-local, loopback)."""
    return any(address in network for network in HOME_NETWORKS)


def appliance_dns_name(appliance_id: str) -> str | None:
    """The one DNS name an appliance's certificate may carry: ``<id>.local``, if that is a host name.

    None for an id that cannot be one label of a host name (a dotted id kept from an older release,
    a hyphen at its end): such an appliance is named by its certificate's CN only.
    """
    name = f"{appliance_id}{MDNS_SUFFIX}"
    return name if "." not in appliance_id and is_host_name(name) else None


def name_constraints() -> x509.NameConstraints:
    """What a household CA permits: host names under the home domains and home-network addresses.

    Other name types (e-mail, URI, directory names) are not constrained; the CA issues none.
    """
    permitted: list[x509.GeneralName] = [x509.DNSName(domain) for domain in HOME_DOMAINS]
    permitted += [x509.IPAddress(network) for network in HOME_NETWORKS]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)
