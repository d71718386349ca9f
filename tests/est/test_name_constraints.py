"""The household CA's name constraint, as OpenSSL and cryptography's verifier apply it.

A phone that trusts the household CA must not accept it for a public site, even from a certificate
signed with the CA's own key (stolen from a backup, say); the hub's own certificates must pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import ipaddress
from pathlib import Path
import shutil
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA, IssuedName
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames

from .conftest import RunningServer

NOW = datetime.now(UTC)
OPENSSL = shutil.which("openssl")

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command (Debian package openssl)")


def openssl_verify(ca: HouseholdCA, certificate: x509.Certificate, directory: Path) -> str:
    """``openssl verify -CAfile`` output; OpenSSL applies name constraints by default."""
    (directory / "ca.pem").write_bytes(ca.certificate_pem)
    (directory / "leaf.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    assert OPENSSL is not None
    process = subprocess.run(
        [OPENSSL, "verify", "-CAfile", directory / "ca.pem", directory / "leaf.pem"],
        capture_output=True,
        text=True,
        check=False,
    )
    return process.stdout + process.stderr


def signed_by_the_ca_key(
    ca: HouseholdCA, common_name: str, dns_names: tuple[str, ...] = (), addresses: tuple[str, ...] = ()
) -> x509.Certificate:
    """Whatever names the caller wants, signed with the CA's key: what a thief of the key could make.

    Valid from a minute ago: the session's CA may have been made minutes after this module's NOW.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    return ca.issue_appliance_certificate(
        public_key=key.public_key(),
        name=IssuedName(common_name, dns_names, tuple(map(ipaddress.ip_address, addresses))),
        server_auth=True,
        serial_number=x509.random_serial_number(),
        not_before=now - timedelta(minutes=1),
        not_after=now + timedelta(days=30),
        crl_url=None,
    )


def server_verifier(ca: HouseholdCA, name: str) -> x509.verification.ServerVerifier:
    """As a browser reaching ``name`` would check, now."""
    try:
        subject: x509.DNSName | x509.IPAddress = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        subject = x509.DNSName(name)
    return (
        PolicyBuilder().store(Store([ca.certificate])).time(datetime.now(UTC)).build_server_verifier(subject)
    )


@pytest.mark.parametrize(
    ("dns_names", "addresses"),
    [
        (("login.microsoftonline.com",), ()),
        (("oven.local", "login.microsoftonline.com"), ()),  # one name off the home network is enough
        (("localhost",), ()),
        (("local.example.com",), ()),
        ((), ("8.8.8.8",)),
        ((), ("2001:db8::1",)),
        ((), ("100.128.0.1",)),  # just past the shared address space
    ],
)
def test_a_name_off_the_home_network_fails_even_signed_with_the_ca_key(
    ca: HouseholdCA, tmp_path: Path, dns_names: tuple[str, ...], addresses: tuple[str, ...]
) -> None:
    forged = signed_by_the_ca_key(ca, "login", dns_names, addresses)
    output = openssl_verify(ca, forged, tmp_path)
    assert "permitted subtree violation" in output, output
    with pytest.raises(VerificationError, match="name constraint"):
        server_verifier(ca, (dns_names or addresses)[-1]).verify(forged, [])


@pytest.mark.parametrize(
    ("common_name", "dns_names", "addresses", "reached_as"),
    [
        ("oven", ("oven.local",), (), "oven.local"),  # an appliance serving TLS
        ("fridge_1", ("fridge_1.local",), (), None),  # cryptography takes no "_" in a name to check
        ("hub", ("hub.home.arpa",), (), "hub.home.arpa"),
        ("oven", (), (), None),  # clientAuth only: its CN has no dot, so OpenSSL does not take it for a host
        ("EST server", ("ha.local",), ("192.168.1.2", "10.1.2.3", "172.20.0.9", "127.0.0.1"), "192.168.1.2"),
        ("EST server", (), ("fd00::2", "fe80::1", "::1", "169.254.7.7", "100.100.1.1"), "fd00::2"),
    ],
)
def test_the_hubs_own_kinds_of_certificate_pass(
    ca: HouseholdCA,
    tmp_path: Path,
    common_name: str,
    dns_names: tuple[str, ...],
    addresses: tuple[str, ...],
    reached_as: str | None,
) -> None:
    certificate = signed_by_the_ca_key(ca, common_name, dns_names, addresses)
    assert openssl_verify(ca, certificate, tmp_path).strip().endswith("OK")
    if reached_as is not None:
        assert server_verifier(ca, reached_as).verify(certificate, [])[0] == certificate


def test_an_id_with_a_dot_and_no_dns_name_trips_openssl(ca: HouseholdCA, tmp_path: Path) -> None:
    """Why ids are one label: without a DNS name, OpenSSL checks a CN that looks like a host name
    (it has a dot) against the DNS constraint, so ``oven.kitchen`` would fail as a client."""
    output = openssl_verify(ca, signed_by_the_ca_key(ca, "oven.kitchen"), tmp_path)
    assert "permitted subtree violation" in output, output


@pytest.mark.parametrize("name", ["Smith", "home.example", "192.168.1.2"])
def test_the_ca_and_listener_names_never_look_like_host_names(name: str, tmp_path: Path) -> None:
    """The CA's CN ("<name> Household CA") and the listener's ("EST server") have a space in them."""
    ca = HouseholdCA.create(name)
    listener = ListenerIdentity.issue(ca, ListenerNames.from_hosts(["127.0.0.1"]), NOW).certificate
    assert listener.subject.rfc4514_string() == "CN=EST server"
    assert openssl_verify(ca, listener, tmp_path).strip().endswith("OK")
    assert openssl_verify(ca, ca.certificate, tmp_path).strip().endswith("OK")


async def test_the_real_listener_verifies_by_its_address(server: RunningServer, tmp_path: Path) -> None:
    """The certificate a TLS handshake presents, checked as a browser would, by 127.0.0.1."""
    presented = await server.presented_certificate()
    assert server_verifier(server.service.ca, "127.0.0.1").verify(presented, [])[0] == presented
    assert openssl_verify(server.service.ca, presented, tmp_path).strip().endswith("OK")
    with pytest.raises(VerificationError):
        server_verifier(server.service.ca, "localhost").verify(presented, [])
