"""A manufacturer's chain for factory certificates: root, intermediate, factory certificate.

Built with `cryptography` for the tests that present factory certificates over real TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from est_tools.appliance.client import client_ssl_context

from .conftest import RunningServer

NOW = datetime.now(UTC)


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def authority(
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    own_key: ec.EllipticCurvePrivateKey,
    name: str,
    not_after: datetime,
) -> x509.Certificate:
    """A manufacturer CA: the root when ``issuer`` is None, else an intermediate under it."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signing_key = (subject, own_key) if issuer is None else (issuer[0].subject, issuer[1])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(own_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=3650))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )


def leaf(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, own_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SN-7")])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(own_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass(frozen=True, slots=True)
class Manufacturer:
    """A root, an intermediate under it, and a factory certificate under that."""

    root: x509.Certificate
    intermediate: x509.Certificate
    factory: x509.Certificate
    factory_key: ec.EllipticCurvePrivateKey

    @classmethod
    def make(cls, *, root_expires: datetime, intermediate_expires: datetime) -> Manufacturer:
        root_key, intermediate_key, factory_key = key(), key(), key()
        root = authority(None, root_key, "Acme Root", root_expires)
        intermediate = authority((root, root_key), intermediate_key, "Acme Factory 2", intermediate_expires)
        return cls(root, intermediate, leaf(intermediate, intermediate_key, factory_key), factory_key)

    def context(self, server: RunningServer, tmp_path: Path) -> ssl.SSLContext:
        """A client context presenting the factory certificate with its intermediate."""
        chain = tmp_path / f"factory-{self.factory.serial_number}.pem"
        chain.write_bytes(
            self.factory.public_bytes(serialization.Encoding.PEM)
            + self.intermediate.public_bytes(serialization.Encoding.PEM)
            + self.factory_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = client_ssl_context(server.service.ca.certificate)
        context.load_cert_chain(chain)
        return context


LATER = NOW + timedelta(days=3650)
