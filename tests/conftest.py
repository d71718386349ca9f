"""What every test needs before the first one runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _let_cryptography_meet_the_real_datetime() -> None:
    """Sign and read one certificate while ``datetime`` is the standard library's.

    cryptography (from 46) looks ``datetime.datetime`` up once, the first time it converts a time,
    and keeps the class it found. Tests frozen by Home Assistant's test plugin (freezegun) replace
    that class for their duration: were a frozen test the first to sign something, every later
    test would get "'datetime' object is not an instance of 'HAFakeDatetime'".
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "warm-up")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(minutes=1))
        .sign(key, hashes.SHA256())
    )
    if certificate.not_valid_after_utc <= certificate.not_valid_before_utc:
        raise AssertionError("cryptography read back a certificate it just signed wrongly")


_let_cryptography_meet_the_real_datetime()
