"""An appliance's credentials on disk: its private key (0600), its certificate and the CA it pinned.

Files (PEM) in the state directory:
    ca.pem           the household CA, pinned at bootstrap; every later session verifies against it
    key.pem          the private key of certificate.pem (or of the first request, while it waits)
    certificate.pem  the current certificate
    next-key.pem     the key of a renewal in progress (rekey); it becomes key.pem once its
                     certificate is stored, so a crash never pairs a certificate with the wrong key

When the owner rejects or revokes the appliance, key and certificate go (``discard_credentials``) and
the CA pin stays: the next enrollment is a new key for the same hub.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
import tempfile

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from custom_components.est_pairing.est.storage import write_private_atomically

_PUBLIC = 0o644


class KeyStore:
    """The state directory of one appliance."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_path = directory / "ca.pem"
        self.key_path = directory / "key.pem"
        self.next_key_path = directory / "next-key.pem"
        self.certificate_path = directory / "certificate.pem"

    # --- the trust anchor ----------------------------------------------------------------------------

    def pinned_ca(self) -> x509.Certificate | None:
        """The CA pinned at bootstrap, if any."""
        if not self.ca_path.exists():
            return None
        return _load_certificate(self.ca_path)

    def pin_ca(self, certificate: x509.Certificate) -> None:
        """Trust this CA from now on."""
        self._prepare()
        write_private_atomically(
            self.ca_path, certificate.public_bytes(serialization.Encoding.PEM), mode=_PUBLIC
        )

    # --- key and certificate -------------------------------------------------------------------------

    def enrollment_key(self) -> ec.EllipticCurvePrivateKey:
        """The key for a first enrollment: the saved one (a request may be waiting on it), else new."""
        if (key := _load_key(self.key_path)) is not None:
            return key
        key = ec.generate_private_key(ec.SECP256R1())
        self._prepare()
        write_private_atomically(self.key_path, _private_pem(key))
        return key

    def renewal_key(self) -> ec.EllipticCurvePrivateKey:
        """A fresh key for a renewal, kept beside the current one until its certificate arrives."""
        key = ec.generate_private_key(ec.SECP256R1())
        write_private_atomically(self.next_key_path, _private_pem(key))
        return key

    def current(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        """The stored certificate and its key; None before the first enrollment."""
        if not self.certificate_path.exists():
            return None
        certificate = _load_certificate(self.certificate_path)
        key = _load_key(self.key_path)
        if key is not None and key.public_key() == certificate.public_key():
            return certificate, key
        next_key = _load_key(self.next_key_path)
        if next_key is not None and next_key.public_key() == certificate.public_key():
            self.next_key_path.replace(self.key_path)  # a crash came between the two steps of store()
            return certificate, next_key
        raise ValueError(f"{self.certificate_path} does not belong to {self.key_path}")

    def store(self, certificate: x509.Certificate) -> None:
        """Keep a newly issued certificate; after a renewal its key (next-key.pem) becomes key.pem."""
        write_private_atomically(
            self.certificate_path, certificate.public_bytes(serialization.Encoding.PEM), mode=_PUBLIC
        )
        next_key = _load_key(self.next_key_path)
        if next_key is not None and next_key.public_key() == certificate.public_key():
            self.next_key_path.replace(self.key_path)

    def discard_credentials(self) -> None:
        """Forget key and certificate (rejected, revoked or expired: not used again); keep the CA pin.

        The next enrollment makes a new key, which the owner approves anew, from the same hub.
        """
        for path in (self.next_key_path, self.certificate_path, self.key_path):
            path.unlink(missing_ok=True)

    def stored_at(self) -> datetime:
        """When the current certificate was stored (the clock for ``--renew-after``)."""
        return datetime.fromtimestamp(self.certificate_path.stat().st_mtime, UTC)

    def check_writable(self) -> None:
        """Create the directory if need be and write a scratch file in it; the OSError if that fails.

        Run before the first request: a directory the appliance cannot keep its key in is found
        before it asks anyone, not after it has pinned a CA or made a request it cannot follow up.
        """
        self._prepare()
        with tempfile.TemporaryFile(dir=self.directory):
            pass

    def _prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise ValueError(f"{path} is not a PEM certificate (a damaged state directory)") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    if not path.exists():
        return None
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (TypeError, ValueError, UnsupportedAlgorithm):  # TypeError: it is encrypted
        raise ValueError(
            f"{path} is not an unencrypted PEM private key (a damaged state directory)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path} is not an EC private key")
    return key


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
