"""The PIN exchange's test vector, byte for byte: the formulas, the vector file and the product's code agree.

Run on each of pysrp's backends that loads here: OpenSSL through ctypes (where libssl.so is found)
and pure Python.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
import importlib
import json

from cryptography.hazmat.primitives.serialization import Encoding
import pytest

from custom_components.est_pairing.est import pake, srp6a, verifiers
from est_tools.appliance.pake_client import ApplianceExchange

from . import pake_vector as vector

BACKENDS = vector.backends()


def test_both_backends_are_exercised_where_libssl_is_found() -> None:
    ids = [param.id for param in BACKENDS]
    assert "pysrp" in ids
    try:
        importlib.import_module("srp._ctsrp")
    except (ImportError, OSError):
        pytest.skip("no libssl.so here: only the pure-Python backend runs")
    assert "ctsrp" in ids


def _pi_times_power_of_two(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula in integers (64 guard bits)."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_of_inverse(x: int) -> int:
        total, power, n, sign = 0, one // x, 1, 1
        while power:
            total += sign * (power // n)
            power //= x * x
            n += 2
            sign = -sign
        return total

    return (16 * arctan_of_inverse(5) - 4 * arctan_of_inverse(239)) >> guard


def test_the_group_is_rfc_5054s_3072_bit_group() -> None:
    # RFC 3526 §4 (RFC 5054 Appendix A takes it with g = 5):
    # p = 2^3072 - 2^3008 - 1 + 2^64 * (floor(2^2942 * pi) + 1690314)
    expected = 2**3072 - 2**3008 - 1 + 2**64 * (_pi_times_power_of_two(2942) + 1690314)
    assert expected == srp6a.N
    assert srp6a.N.bit_length() == 3072 == srp6a.N_BYTES * 8
    assert srp6a.G == 5
    # 5 is a quadratic non-residue modulo the safe prime N: it generates the whole group.
    assert pow(srp6a.G, (srp6a.N - 1) // 2, srp6a.N) == srp6a.N - 1


def test_the_vector_file_is_what_the_formulas_give() -> None:
    data = vector.load()
    assert data == json.loads(json.dumps(vector.build()))
    values = vector.transcript(
        vector.APPLIANCE_ID,
        vector.PIN,
        vector.SALT,
        vector.number(vector.A_SECRET),
        vector.number(vector.B_SECRET),
    )
    assert values["S"] == values["S_hub"]  # both sides' formulas meet
    assert values["K"] == values["K_hub"]
    assert data["group"]["N"] == srp6a.N_HEX.decode().lower()
    assert data["inputs"]["salt"] == vector.SALT.hex()
    numbers = ("k", "x", "v", "A", "B", "u", "S")  # minimal big-endian: no leading zero byte
    assert all(bytes.fromhex(data["values"][name])[0] != 0 for name in numbers)
    hashes = ("K", "M1", "M2", "key_appliance_to_hub", "key_hub_to_appliance", "csr_mac", "mac")
    assert all(len(bytes.fromhex(data["values"][name])) == srp6a.HASH_BYTES for name in hashes)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_product_code_reproduces_every_message_byte_for_byte(backend: srp6a.SrpBackend) -> None:
    data = vector.load()
    values = {name: bytes.fromhex(value) for name, value in data["values"].items()}
    expected = [message["body"].encode() for message in data["messages"]]
    csr_der = base64.b64decode(data["inputs"]["csr"])
    final = json.loads(expected[5])
    ca_der, certificate_der = base64.b64decode(final["ca"]), base64.b64decode(final["certificate"])

    hub = pake.HubExchanges(
        work=verifiers.ThreadedSrp(backend),
        random_bytes=_fixed({32: vector.B_SECRET, 16: vector.SESSION_RANDOM}),
    )
    stored = verifiers.PinVerifier(vector.APPLIANCE_ID, vector.SALT, values["v"])
    appliance = ApplianceExchange(
        vector.APPLIANCE_ID, vector.PIN, csr_der, backend=backend, ephemeral=vector.A_SECRET
    )

    sent = [pake.encode(appliance.start())]
    start = pake.parse_request(sent[0])
    assert isinstance(start, pake.StartRequest)
    sent.append(pake.encode((await hub.start(start, stored, "192.0.2.7")).to_dict()))
    sent.append(pake.encode(appliance.answer(sent[1])))
    prove = pake.parse_request(sent[2])
    assert isinstance(prove, pake.ProveRequest)
    sent.append(pake.encode((await hub.prove(hub.take(prove.session), prove)).to_dict()))
    sent.append(pake.encode(appliance.confirm(sent[3])))
    enroll = pake.parse_request(sent[4])
    assert isinstance(enroll, pake.EnrollRequest)
    success = hub.enroll(hub.take(enroll.session), enroll)
    sent.append(pake.encode(success.final_answer(ca_der, certificate_der).to_dict()))

    assert sent == expected
    assert success.keys.appliance_to_hub == values["key_appliance_to_hub"]
    assert success.keys.hub_to_appliance == values["key_hub_to_appliance"]
    paired = appliance.conclude(sent[5])
    assert paired.ca.public_bytes(Encoding.DER) == ca_der
    assert paired.certificate.public_bytes(Encoding.DER) == certificate_der


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_verifier_the_library_makes_is_the_formulas_v_for_its_salt(backend: srp6a.SrpBackend) -> None:
    record = verifiers.PinVerifier.create(vector.APPLIANCE_ID, vector.PIN, backend)
    assert len(record.salt) == srp6a.SALT_BYTES
    assert record.salt[0] != 0
    assert record.verifier == vector.verifier(record.salt, vector.APPLIANCE_ID, vector.PIN)
    assert record.matches(vector.PIN, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_vectors_verifier_accepts_its_pin_and_no_other(backend: srp6a.SrpBackend) -> None:
    record = verifiers.PinVerifier(
        vector.APPLIANCE_ID, vector.SALT, bytes.fromhex(vector.load()["values"]["v"])
    )
    assert record.matches(vector.PIN, backend)
    assert not record.matches("482914", backend)


def _fixed(by_length: dict[int, bytes]) -> Callable[[int], bytes]:
    def random_bytes(length: int) -> bytes:
        return by_length[length]

    return random_bytes


def test_the_appliance_profile_gives_the_constants_the_code_uses() -> None:
    profile = (vector.VECTOR_FILE.parents[3] / "docs" / "appliance-profile.md").read_text()
    assert f"`{pake.MDNS_TXT_KEY}={srp6a.METHOD}`" in profile
    assert f"`{pake.INFO_APPLIANCE_TO_HUB.decode()}`" in profile
    prefix = pake.INFO_APPLIANCE_TO_HUB.removesuffix(b"appliance to hub")
    assert prefix + b"hub to appliance" == pake.INFO_HUB_TO_APPLIANCE
    assert "`... hub to appliance`" in profile
    assert f"/pake` answers `200`, `application/json`:\n  `{pake.encode(pake.offer()).decode()}`" in profile
    assert str(vector.VECTOR_FILE.relative_to(vector.VECTOR_FILE.parents[3])) in profile
    assert f"salt` {srp6a.SALT_BYTES} bytes" in profile
