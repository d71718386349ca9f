"""TLS for EST: the listener's certificate from the household CA, and the server's SSL context."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
import ipaddress
import os
from pathlib import Path
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .ca import HouseholdCA, IPAddress
from .homenet import is_home_address, is_home_name
from .limits import LISTENER_RENEW_BEFORE_DAYS, LISTENER_VALIDITY_DAYS

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (x509_vfy.h): the handshake checks that a client certificate
# chains to a trust anchor; its expiry is judged by the EST layer, which answers 403 instead of
# aborting the handshake with an alert no EST client can explain.
_NO_CHECK_TIME = 0x200000
# Forward secrecy and AEAD only, for TLS 1.2; TLS 1.3 suites are all of that already.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True, slots=True)
class ListenerNames:
    """Every name and address clients reach the listener by (all of them are kept from appliances)."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]

    @classmethod
    def from_hosts(cls, hosts: Iterable[str]) -> ListenerNames:
        """Sort host strings into DNS names and IP addresses, dropping duplicates, keeping order."""
        dns_names: dict[str, None] = {}
        addresses: dict[IPAddress, None] = {}
        for host in hosts:
            host = host.strip().strip("[]").rstrip(".")
            if not host or host in {"0.0.0.0", "::"}:  # noqa: S104 - wildcard binds name nothing
                continue
            try:
                addresses[ipaddress.ip_address(host.split("%", 1)[0])] = None
            except ValueError:
                dns_names[host.lower()] = None
        return cls(tuple(dns_names), tuple(addresses))

    def all(self) -> list[str]:
        """Names then addresses, as strings."""
        return [*self.dns_names, *map(str, self.ip_addresses)]

    def certified(self) -> ListenerNames:
        """Those the listener's certificate carries: names and addresses of the home network only.

        Not ``localhost`` or a bare host name (no home-network name, and RFC 5280 wants a dNSName
        to be a fully qualified host name), nor a public address: the household CA's name
        constraint would refuse them.
        """
        return ListenerNames(
            tuple(filter(is_home_name, self.dns_names)), tuple(filter(is_home_address, self.ip_addresses))
        )


@dataclass(frozen=True, slots=True)
class ListenerIdentity:
    """The listener's certificate and key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def issue(cls, ca: HouseholdCA, names: ListenerNames, now: datetime) -> ListenerIdentity:
        """A fresh key and certificate covering the names of ``names`` it may carry (:meth:`certified`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        certified = names.certified()
        certificate = ca.issue_listener_certificate(
            public_key=key.public_key(),
            dns_names=certified.dns_names,
            ip_addresses=certified.ip_addresses,
            not_before=now - timedelta(minutes=5),
            not_after=now + timedelta(days=LISTENER_VALIDITY_DAYS),
        )
        return cls(certificate, key)

    @classmethod
    def from_pem(cls, certificate_pem: bytes, private_key_pem: bytes) -> ListenerIdentity:
        """Load what :meth:`to_pem` wrote."""
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the listener key must be an EC key")
        return cls(x509.load_pem_x509_certificate(certificate_pem), key)

    def to_pem(self) -> tuple[bytes, bytes]:
        """Certificate and PKCS#8 key as PEM."""
        return (
            self.certificate.public_bytes(serialization.Encoding.PEM),
            _private_pem(self.private_key),
        )

    def names(self) -> ListenerNames:
        """The names the certificate covers."""
        try:
            san = self.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return ListenerNames((), ())
        return ListenerNames(
            tuple(san.value.get_values_for_type(x509.DNSName)),
            tuple(
                address
                for address in san.value.get_values_for_type(x509.IPAddress)
                if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            ),
        )

    def covers(self, names: ListenerNames) -> bool:
        """Whether every name and address the certificate may carry is in it."""
        mine, wanted = self.names(), names.certified()
        return set(wanted.dns_names) <= set(mine.dns_names) and set(wanted.ip_addresses) <= set(
            mine.ip_addresses
        )

    def needs_renewal(self, ca: HouseholdCA, names: ListenerNames, now: datetime) -> bool:
        """Re-issue when names changed, expiry nears, or another CA signed it.

        Also when it carries a name it may no longer carry (``localhost``, written by older releases).
        """
        renew_at = self.certificate.not_valid_after_utc - timedelta(days=LISTENER_RENEW_BEFORE_DAYS)
        mine = self.names()
        return (
            now >= renew_at
            or not self.covers(names)
            or mine != mine.certified()
            or not ca.issued(self.certificate)
        )


def server_ssl_context(
    identity: ListenerIdentity,
    household_ca: x509.Certificate,
    manufacturer_cas: Sequence[x509.Certificate] = (),
) -> ssl.SSLContext:
    """TLS 1.2+ server context. Blocking (it loads files).

    Client certificates are requested, optional, and must chain to the household CA or one of
    ``manufacturer_cas``.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= _NO_CHECK_TIME
    context.load_verify_locations(cadata=_pem_bundle([household_ca, *manufacturer_cas]))
    load_identity(context, identity, household_ca)
    return context


def load_identity(
    context: ssl.SSLContext, identity: ListenerIdentity, household_ca: x509.Certificate
) -> None:
    """Install (or replace) what new handshakes present: the certificate, then the household CA. Blocking.

    The chain is given whole on purpose. Given the certificate alone, OpenSSL builds the chain for
    every handshake from the context's trust store, checking the certificate's signature each time
    to send the same two certificates: 0.93 M instructions per handshake, which would make a bare
    TLS request (3.67 M) a quarter dearer (``scripts/bench --instructions``, docs/performance.md).
    """
    load_cert_chain(context, [identity.certificate, household_ca], identity.private_key)


def load_cert_chain(
    context: ssl.SSLContext, chain: Sequence[x509.Certificate], private_key: PrivateKeyTypes
) -> None:
    """Install the certificate, its intermediates (nearest first) and its key for handshakes. Blocking."""
    # The ssl module loads certificates and keys only from files: a private temporary directory.
    with tempfile.TemporaryDirectory(prefix="est-tls-") as directory:
        certificate_path = Path(directory, "certificate.pem")
        key_path = Path(directory, "key.pem")
        certificate_path.write_text(_pem_bundle(chain))
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(_private_pem(private_key))
        context.load_cert_chain(certificate_path, key_path)


def _pem_bundle(certificates: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certificates)


def _private_pem(private_key: PrivateKeyTypes) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
