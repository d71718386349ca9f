"""The PIN exchange's test vector, computed from the formulas docs/appliance-profile.md gives, not from pysrp.

An independent implementation, for tests only: plain integers, hashlib, and HKDF and HMAC written out
from RFC 5869 and RFC 2104 with the standard library, so that the product's code (pysrp and
cryptography) is checked against something other than itself. ``python -m tests.est.pake_vector``
writes the vector file; the tests compare the file with this and with the product's code.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
import hashlib
import hmac
import importlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
import pytest

from custom_components.est_pairing.est import pake, srp6a

VECTOR_FILE = Path(__file__).parent / "vectors" / "pake-srp6a-sha512-3072.json"

APPLIANCE_ID = "oven"
PIN = "482913"
SALT = bytes.fromhex("b3c4d5e6f708192a3b4c5d6e7f8091a2")
A_SECRET = hashlib.sha256(b"test vector: the appliance's ephemeral a").digest()
B_SECRET = hashlib.sha256(b"test vector: the hub's ephemeral b").digest()
SESSION_RANDOM = hashlib.sha256(b"test vector: the session id").digest()[:16]
APPLIANCE_KEY_SEED = hashlib.sha256(b"test vector: the appliance's Ed25519 key").digest()
CA_KEY_SEED = hashlib.sha256(b"test vector: the CA's Ed25519 key").digest()
NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)


def sha512(*parts: bytes) -> bytes:
    return hashlib.sha512(b"".join(parts)).digest()


def minimal(number: int) -> bytes:
    """A number's big-endian bytes without leading zero bytes (what every hash here takes)."""
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


def number(data: bytes) -> int:
    return int.from_bytes(data, "big")


def hkdf_sha512(ikm: bytes, info: bytes, length: int = 64) -> bytes:
    """RFC 5869 with no salt (HashLen zero bytes)."""
    prk = hmac.new(bytes(64), ikm, hashlib.sha512).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha512).digest()
        okm += block
        counter += 1
    return okm[:length]


def hmac_sha512(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


def private_x(salt: bytes, appliance_id: str, pin: str) -> int:
    """x = H(s || H(I || ":" || P))."""
    return number(sha512(salt, sha512(appliance_id.encode(), b":", pin.encode())))


def verifier(salt: bytes, appliance_id: str, pin: str) -> bytes:
    """v = g^x mod N, minimal bytes."""
    return minimal(pow(srp6a.G, private_x(salt, appliance_id, pin), srp6a.N))


def transcript(
    appliance_id: str, pin: str, salt: bytes, a: int, b: int, *, hub_verifier: bytes | None = None
) -> dict[str, bytes]:
    """Every value of one exchange. ``hub_verifier``: a hub holding another verifier (a fake hub)."""
    N, g = srp6a.N, srp6a.G  # noqa: N806 - the names of the formulas
    k = number(sha512(minimal(N), minimal(g)))
    x = private_x(salt, appliance_id, pin)
    v = pow(g, x, N)
    hub_v = number(hub_verifier) if hub_verifier is not None else v
    A = pow(g, a, N)  # noqa: N806
    B = (k * hub_v + pow(g, b, N)) % N  # noqa: N806
    u = number(sha512(minimal(A), minimal(B)))
    S_appliance = pow((B - k * pow(g, x, N)) % N, a + u * x, N)  # noqa: N806
    S_hub = pow(A * pow(hub_v, u, N), b, N)  # noqa: N806
    K = sha512(minimal(S_appliance))  # noqa: N806
    hn_xor_hg = bytes(p ^ q for p, q in zip(sha512(minimal(N)), sha512(minimal(g)), strict=True))
    M1 = sha512(hn_xor_hg, sha512(appliance_id.encode()), salt, minimal(A), minimal(B), K)  # noqa: N806
    M2 = sha512(minimal(A), M1, K)  # noqa: N806
    return {
        "k": minimal(k),
        "x": minimal(x),
        "v": minimal(v),
        "A": minimal(A),
        "B": minimal(B),
        "u": minimal(u),
        "S": minimal(S_appliance),
        "S_hub": minimal(S_hub),
        "K": K,
        "K_hub": sha512(minimal(S_hub)),
        "M1": M1,
        "M2": M2,
        "key_appliance_to_hub": hkdf_sha512(K, pake.INFO_APPLIANCE_TO_HUB),
        "key_hub_to_appliance": hkdf_sha512(K, pake.INFO_HUB_TO_APPLIANCE),
    }


def answer_mac(key: bytes, ca_der: bytes, certificate_der: bytes) -> bytes:
    return hmac_sha512(key, len(ca_der).to_bytes(4, "big") + ca_der + certificate_der)


def certificates() -> tuple[bytes, bytes, bytes]:
    """The CSR, CA and certificate of the vector: Ed25519 signs deterministically, so these never change."""
    appliance_key = ed25519.Ed25519PrivateKey.from_private_bytes(APPLIANCE_KEY_SEED)
    ca_key = ed25519.Ed25519PrivateKey.from_private_bytes(CA_KEY_SEED)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, APPLIANCE_ID)]))
        .sign(appliance_key, None)
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test vector Household CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, None)
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(2)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .sign(ca_key, None)
    )
    return (
        csr.public_bytes(Encoding.DER),
        ca.public_bytes(Encoding.DER),
        certificate.public_bytes(Encoding.DER),
    )


def session_id() -> str:
    return base64.urlsafe_b64encode(SESSION_RANDOM).rstrip(b"=").decode()


def build() -> dict[str, Any]:
    """The vector file's content."""
    csr_der, ca_der, certificate_der = certificates()
    values = transcript(APPLIANCE_ID, PIN, SALT, number(A_SECRET), number(B_SECRET))
    csr_mac = hmac_sha512(values["key_appliance_to_hub"], csr_der)
    mac = answer_mac(values["key_hub_to_appliance"], ca_der, certificate_der)
    session = session_id()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    messages = [
        ("appliance", {"step": "start", "method": srp6a.METHOD, "id": APPLIANCE_ID, "A": b64(values["A"]),
                       "csr": b64(csr_der)}),
        ("hub", {"session": session, "salt": b64(SALT), "B": b64(values["B"])}),
        ("appliance", {"step": "prove", "session": session, "M1": b64(values["M1"])}),
        ("hub", {"M2": b64(values["M2"])}),
        ("appliance", {"step": "enroll", "session": session, "csr_mac": b64(csr_mac)}),
        ("hub", {"ca": b64(ca_der), "certificate": b64(certificate_der), "mac": b64(mac)}),
    ]  # fmt: skip
    hidden = {"S_hub", "K_hub"}  # equal to S and K: checked, not listed
    return {
        "description": (
            "A complete PIN exchange (docs/appliance-profile.md, 'Pairing with the PIN') from fixed "
            "randomness. Numbers and hashes in hex, big-endian, minimal (no leading zero bytes); "
            "messages exactly as sent (UTF-8 JSON bodies of POST .../pake and their 200 answers)."
        ),
        "method": srp6a.METHOD,
        "group": {"N": minimal(srp6a.N).hex(), "g": srp6a.G, "hash": "SHA-512"},
        "inputs": {
            "id": APPLIANCE_ID,
            "pin": PIN,
            "salt": SALT.hex(),
            "a": A_SECRET.hex(),
            "b": B_SECRET.hex(),
            "csr": b64(csr_der),
        },
        "values": {name: value.hex() for name, value in values.items() if name not in hidden}
        | {"csr_mac": csr_mac.hex(), "mac": mac.hex()},
        "messages": [{"from": sender, "body": pake.encode(body).decode()} for sender, body in messages],
    }


def backends() -> list[Any]:
    """pytest parameters for each of pysrp's backends that loads here (OpenSSL's needs libssl.so)."""
    found = []
    for name in ("srp._ctsrp", "srp._pysrp"):
        try:
            found.append(pytest.param(importlib.import_module(name), id=name.rpartition("_")[2]))
        except (ImportError, OSError):
            continue
    return found


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTOR_FILE.read_text())
    return data


if __name__ == "__main__":
    VECTOR_FILE.parent.mkdir(exist_ok=True)
    VECTOR_FILE.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {VECTOR_FILE}")
