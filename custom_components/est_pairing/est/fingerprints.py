"""SHA-256 fingerprints of certificates and keys: computed, shown to people in groups, and read back."""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_fingerprint(der: bytes) -> str:
    """Lower-case hex SHA-256, the fingerprint format used everywhere in this project."""
    return hashlib.sha256(der).hexdigest()


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 over the certificate's DER."""
    return sha256_fingerprint(certificate.public_bytes(serialization.Encoding.DER))


def public_key_fingerprint(public_key: CertificatePublicKeyTypes) -> str:
    """SHA-256 over the SubjectPublicKeyInfo DER (stable across re-issued certificates)."""
    return sha256_fingerprint(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def format_fingerprint(fingerprint: str, *, groups: int | None = None) -> str:
    """``ab12 cd34 ...`` groups of four for people to compare; ``groups`` keeps only the first few."""
    chunks = [fingerprint[i : i + 4].upper() for i in range(0, len(fingerprint), 4)]
    return " ".join(chunks[:groups] if groups else chunks)


def normalize_fingerprint(text: str) -> str:
    """``AB:12 cd-34...`` -> ``ab12cd34...``; raises ValueError unless it is a SHA-256 in hex."""
    compact = re.sub(r"[\s:.-]", "", text).lower()
    if not _HEX.fullmatch(compact):
        raise ValueError("a CA fingerprint is 64 hexadecimal digits (SHA-256)")
    return compact
