"""The PIN exchange (SRP-6a), hub and appliance in one process: pairing, wrong PINs, relays, fake hubs,
eavesdroppers, the hub's session bounds, malformed messages, and the HTTP Basic PIN check.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import hashlib
import json
import secrets
from types import SimpleNamespace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
import pytest
import srp
import srp._pysrp

from custom_components.est_pairing.est import pake, srp6a, verifiers
from custom_components.est_pairing.est.ca import HouseholdCA, IssuedName
from custom_components.est_pairing.est.errors import (
    Busy,
    EstError,
    ExchangeGone,
    HubProofFailed,
    LockedOut,
    MalformedRequest,
    PairingProofFailed,
    ProtocolError,
    TooManyRequests,
)
from custom_components.est_pairing.est.limits import FREE_ATTEMPTS, PAKE_SESSION_TTL
from custom_components.est_pairing.est.srp6a import b64
from custom_components.est_pairing.est.srp_worker import SrpWorker
from custom_components.est_pairing.est.status import status_for
from custom_components.est_pairing.est.throttle import SecretThrottle
from est_tools.appliance.pake_client import ApplianceExchange, Paired

from . import pake_vector as vector

PIN = "482913"
BACKENDS = vector.backends()


def make_csr(common_name: str = "oven") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


@pytest.fixture(scope="module")
def stored() -> verifiers.PinVerifier:
    """The verifier the hub keeps for oven and its PIN (made once: the exponentiation is the slow part)."""
    return verifiers.PinVerifier.create("oven", PIN)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def issue(ca: HouseholdCA, success: pake.PakeSuccess) -> bytes:
    """What the registrar will do once wired: issue for the exchange's request."""
    now = datetime.now(UTC)
    certificate = ca.issue_appliance_certificate(
        public_key=success.session.request.public_key,
        name=IssuedName(success.session.appliance_id),
        server_auth=False,
        serial_number=x509.random_serial_number(),
        not_before=now,
        not_after=now + timedelta(days=1),
        crl_url=None,
    )
    return certificate.public_bytes(Encoding.DER)


@dataclass
class Wire:
    """Every body both ends sent, in order, as an eavesdropper sees them."""

    bodies: list[bytes]

    def send(self, message: dict[str, Any]) -> bytes:
        body = pake.encode(message)
        self.bodies.append(body)
        return body


async def pair(
    hub: pake.HubExchanges,
    appliance: ApplianceExchange,
    verifier: verifiers.PinVerifier,
    ca: HouseholdCA,
    wire: Wire | None = None,
) -> Paired:
    """One whole exchange, every message through its encoding and parser."""
    wire = wire or Wire([])
    start = pake.parse_request(wire.send(appliance.start()))
    assert isinstance(start, pake.StartRequest)
    challenge = wire.send((await hub.start(start, verifier, "192.0.2.7")).to_dict())
    prove = pake.parse_request(wire.send(appliance.answer(challenge)))
    assert isinstance(prove, pake.ProveRequest)
    hub_proof = wire.send((await hub.prove(hub.take(prove.session), prove)).to_dict())
    enroll = pake.parse_request(wire.send(appliance.confirm(hub_proof)))
    assert isinstance(enroll, pake.EnrollRequest)
    success = hub.enroll(hub.take(enroll.session), enroll)
    final = success.final_answer(ca.certificate.public_bytes(Encoding.DER), issue(ca, success))
    return appliance.conclude(wire.send(final.to_dict()))


# --- pairing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_appliance_pins_the_real_ca_and_gets_a_certificate_for_its_own_key(
    backend: srp6a.SrpBackend, ca: HouseholdCA
) -> None:
    verifier = verifiers.PinVerifier.create("oven", PIN, backend)
    csr_der = make_csr()
    hub = pake.HubExchanges(work=verifiers.ThreadedSrp(backend))
    paired = await pair(hub, ApplianceExchange("oven", PIN, csr_der, backend=backend), verifier, ca)
    assert paired.ca == ca.certificate
    paired.certificate.verify_directly_issued_by(ca.certificate)
    assert paired.certificate.public_key() == x509.load_der_x509_csr(csr_der).public_key()
    assert paired.certificate.subject.rfc4514_string() == "CN=oven"
    assert len(hub) == 0  # the finished exchange is gone


async def test_the_steps_pair_with_the_srp_worker_process(
    stored: verifiers.PinVerifier, ca: HouseholdCA
) -> None:
    """The hub's steps in the SRP worker process, as the listener takes them."""
    worker = SrpWorker()
    hub = pake.HubExchanges(work=worker)
    appliance = ApplianceExchange("oven", PIN, make_csr())
    start = pake.parse_request(pake.encode(await appliance.start_async()))
    assert isinstance(start, pake.StartRequest)
    challenge = await hub.start(start, stored, None)
    prove = pake.parse_request(pake.encode(await appliance.answer_async(pake.encode(challenge.to_dict()))))
    assert isinstance(prove, pake.ProveRequest)
    hub_proof = await hub.prove(hub.take(prove.session), prove)
    enroll = pake.parse_request(pake.encode(appliance.confirm(pake.encode(hub_proof.to_dict()))))
    assert isinstance(enroll, pake.EnrollRequest)
    success = hub.enroll(hub.take(enroll.session), enroll)
    answer = success.final_answer(ca.certificate.public_bytes(Encoding.DER), issue(ca, success))
    assert appliance.conclude(pake.encode(answer.to_dict())).ca == ca.certificate
    assert await worker.make_verifier("oven", PIN) != stored  # a new salt each time
    await worker.close()


def test_the_offer_lists_the_method() -> None:
    assert pake.parse_offer(pake.encode(pake.offer())) == (srp6a.METHOD,)
    with pytest.raises(ProtocolError, match="no list of methods"):
        pake.parse_offer(b'{"methods": "srp6a-sha512-3072"}')


# --- wrong PINs ----------------------------------------------------------------------------------------


async def start_and_answer(
    hub: pake.HubExchanges, appliance: ApplianceExchange, verifier: verifiers.PinVerifier
) -> tuple[pake.ProveRequest, pake.PakeSession]:
    start = pake.parse_request(pake.encode(appliance.start()))
    assert isinstance(start, pake.StartRequest)
    challenge = await hub.start(start, verifier, "192.0.2.7")
    prove = pake.parse_request(pake.encode(appliance.answer(pake.encode(challenge.to_dict()))))
    assert isinstance(prove, pake.ProveRequest)
    return prove, hub.take(prove.session)


async def test_a_wrong_pin_on_the_appliance_is_refused_and_counted_until_the_lockout(
    stored: verifiers.PinVerifier,
) -> None:
    hub = pake.HubExchanges()
    throttle = SecretThrottle(Clock())
    for _ in range(FREE_ATTEMPTS):
        throttle.check("id:oven")
        prove, session = await start_and_answer(hub, ApplianceExchange("oven", "000000", make_csr()), stored)
        with pytest.raises(PairingProofFailed, match="does not know the PIN") as refused:
            await hub.prove(session, prove)
        assert status_for(refused.value) == 401
        throttle.failure(f"id:{session.appliance_id}")  # what the hub's caller does with the refusal
        with pytest.raises(ExchangeGone):  # a failed exchange cannot be tried again
            hub.take(prove.session)
    with pytest.raises(LockedOut):
        throttle.check("id:oven")


async def test_a_pin_the_owner_mistyped_fails_the_exchange_at_the_hub(ca: HouseholdCA) -> None:
    typed = verifiers.PinVerifier.create("oven", "482931")  # the owner swapped two digits
    hub = pake.HubExchanges()
    prove, session = await start_and_answer(hub, ApplianceExchange("oven", PIN, make_csr()), typed)
    with pytest.raises(PairingProofFailed):
        await hub.prove(session, prove)


async def test_a_fake_hub_gets_m1_but_its_own_proof_and_ca_are_refused() -> None:
    """A fake hub does not have the verifier: whatever M2 it makes, the appliance stops there."""
    csr_der = make_csr()
    salt = bytes.fromhex("c1") * srp6a.SALT_BYTES
    guess = verifiers.PinVerifier("oven", salt, vector.verifier(salt, "oven", "123456"))  # its one guess
    fake = pake.HubExchanges(random_bytes=lambda n: vector.B_SECRET if n == 32 else bytes(n))
    appliance = ApplianceExchange("oven", PIN, csr_der, ephemeral=vector.A_SECRET)
    prove, session = await start_and_answer(fake, appliance, guess)
    with pytest.raises(PairingProofFailed):  # the fake cannot check M1 either
        await fake.prove(session, prove)
    # Its best answer: M2 from the K its own verifier gives.
    values = vector.transcript(
        "oven", PIN, salt, vector.number(vector.A_SECRET), vector.number(vector.B_SECRET),
        hub_verifier=guess.verifier,
    )  # fmt: skip
    fake_m2 = vector.sha512(values["A"], prove.proof, values["K_hub"])
    with pytest.raises(HubProofFailed, match="could not prove it knows this appliance's PIN"):
        appliance.confirm(pake.encode(pake.HubProof(fake_m2).to_dict()))
    with pytest.raises(RuntimeError, match="at its failed step"):  # nothing further: no CA
        appliance.conclude(pake.encode({"ca": "AA==", "certificate": "AA==", "mac": b64(bytes(64))}))


async def test_a_fake_hub_that_skips_its_proof_gets_nothing_pinned(
    stored: verifiers.PinVerifier, ca: HouseholdCA
) -> None:
    appliance = ApplianceExchange("oven", PIN, make_csr())
    await start_and_answer(pake.HubExchanges(), appliance, stored)
    fake_answer = {"ca": base64.b64encode(ca.certificate.public_bytes(Encoding.DER)).decode(), "mac": "AA=="}
    with pytest.raises(ProtocolError, match="'M2' is missing"):
        appliance.confirm(pake.encode(fake_answer))


# --- relays ------------------------------------------------------------------------------------------


async def test_a_relay_that_swaps_in_its_own_request_gets_no_certificate(
    stored: verifiers.PinVerifier,
) -> None:
    hub = pake.HubExchanges()
    appliance = ApplianceExchange("oven", PIN, make_csr())
    sent = appliance.start()
    relayed = sent | {"csr": base64.b64encode(make_csr()).decode()}  # the relay's own key, same id
    start = pake.parse_request(pake.encode(relayed))
    assert isinstance(start, pake.StartRequest)
    challenge = await hub.start(start, stored, "192.0.2.66")
    prove = pake.parse_request(pake.encode(appliance.answer(pake.encode(challenge.to_dict()))))
    assert isinstance(prove, pake.ProveRequest)
    hub_proof = await hub.prove(hub.take(prove.session), prove)  # the appliance knows the PIN ...
    enroll = pake.parse_request(pake.encode(appliance.confirm(pake.encode(hub_proof.to_dict()))))
    assert isinstance(enroll, pake.EnrollRequest)
    with pytest.raises(PairingProofFailed, match="not the one it started with") as refused:
        hub.enroll(hub.take(enroll.session), enroll)  # ... but MACs its own request, not the relay's
    assert status_for(refused.value) == 401
    assert len(hub) == 0


async def test_a_relay_that_swaps_in_its_own_ca_is_not_pinned(
    stored: verifiers.PinVerifier, ca: HouseholdCA
) -> None:
    relay_ca = HouseholdCA.create("Relay")
    hub = pake.HubExchanges()
    appliance = ApplianceExchange("oven", PIN, make_csr())
    wire = Wire([])
    with pytest.raises(HubProofFailed, match="not the ones the PIN exchange authenticated"):
        await pair(hub, appliance, stored, ca, _SwapCa(wire.bodies, relay_ca))


class _SwapCa(Wire):
    """A relay that forwards everything but puts its own CA (and a certificate from it) in the answer."""

    def __init__(self, bodies: list[bytes], relay_ca: HouseholdCA) -> None:
        super().__init__(bodies)
        self.relay_ca = relay_ca

    def send(self, message: dict[str, Any]) -> bytes:
        if "ca" in message:
            message = message | {
                "ca": base64.b64encode(self.relay_ca.certificate.public_bytes(Encoding.DER)).decode()
            }
        return super().send(message)


# --- eavesdroppers -------------------------------------------------------------------------------------


async def test_the_transcript_holds_neither_the_pin_nor_a_hash_of_it(
    stored: verifiers.PinVerifier, ca: HouseholdCA
) -> None:
    wire = Wire([])
    await pair(pake.HubExchanges(), ApplianceExchange("oven", PIN, make_csr()), stored, ca, wire)
    assert len(wire.bodies) == 6
    seen = b"".join(wire.bodies)
    for body in wire.bodies:  # the binary fields too, decoded
        for value in json.loads(body).values():
            if isinstance(value, str):
                seen += _decoded(value)
    secrets_ = [PIN.encode(), f"oven:{PIN}".encode()]
    digests = [algorithm(s).digest() for s in secrets_ for algorithm in (hashlib.sha256, hashlib.sha512)]
    digests.append(vector.sha512(stored.salt, vector.sha512(f"oven:{PIN}".encode())))  # x
    digests.append(stored.verifier)  # v
    for forbidden in secrets_ + digests:
        for form in _forms(forbidden):
            assert form not in seen, forbidden


def _decoded(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return b""


def _forms(data: bytes) -> list[bytes]:
    return [data, data.hex().encode(), data.hex().upper().encode(), base64.b64encode(data).rstrip(b"=")]


# --- the hub's sessions -------------------------------------------------------------------------------


def start_request(csr_der: bytes | None = None, appliance_id: str = "oven") -> pake.StartRequest:
    a_public = pow(srp6a.G, 12345, srp6a.N).to_bytes(srp6a.N_BYTES, "big").lstrip(b"\0")
    start = pake.parse_request(pake.encode(pake.start_message(appliance_id, a_public, csr_der or make_csr())))
    assert isinstance(start, pake.StartRequest)
    return start


async def test_an_exchange_expires(stored: verifiers.PinVerifier) -> None:
    clock = Clock()
    hub = pake.HubExchanges(clock=clock)
    challenge = await hub.start(start_request(), stored, None)
    clock.now += PAKE_SESSION_TTL
    assert len(hub) == 0
    with pytest.raises(ExchangeGone, match="expired") as gone:
        hub.take(challenge.session)
    assert status_for(gone.value) == 400


async def test_a_proven_exchange_expires_before_its_enroll_too(stored: verifiers.PinVerifier) -> None:
    clock = Clock()
    hub = pake.HubExchanges(clock=clock)
    appliance = ApplianceExchange("oven", PIN, make_csr())
    prove, session = await start_and_answer(hub, appliance, stored)
    await hub.prove(session, prove)
    clock.now += PAKE_SESSION_TTL
    with pytest.raises(ExchangeGone):
        hub.take(prove.session)


async def test_the_exchanges_are_bounded_overall_and_per_address(stored: verifiers.PinVerifier) -> None:
    spent: list[int] = []

    def random_bytes(length: int) -> bytes:
        spent.append(length)
        return secrets.token_bytes(length)

    hub = pake.HubExchanges(capacity=3, per_address=2, random_bytes=random_bytes)
    await hub.start(start_request(), stored, "192.0.2.1")
    await hub.start(start_request(), stored, "192.0.2.1")
    with pytest.raises(TooManyRequests, match="from this address") as per_address:
        await hub.start(start_request(), stored, "192.0.2.1")
    assert status_for(per_address.value) == 429
    await hub.start(start_request(), stored, "192.0.2.2")
    spent.clear()
    with pytest.raises(Busy, match="too many PIN exchanges") as full:
        await hub.start(start_request(), stored, "192.0.2.3")
    assert status_for(full.value) == 503
    assert full.value.retry_after == PAKE_SESSION_TTL
    assert spent == []  # refused before any work
    assert len(hub) == 3


async def test_a_full_table_refuses_before_the_exponentiation_and_after_it(
    stored: verifiers.PinVerifier,
) -> None:
    hub = pake.HubExchanges(capacity=1)
    await hub.start(start_request(), stored, None)
    with pytest.raises(Busy):
        await hub.start(start_request(), stored, None)


async def test_a_new_start_for_the_same_request_replaces_the_earlier_exchange(
    stored: verifiers.PinVerifier,
) -> None:
    hub = pake.HubExchanges(capacity=1)
    csr_der = make_csr()
    first = await hub.start(start_request(csr_der), stored, "192.0.2.1")
    second = await hub.start(
        start_request(csr_der), stored, "192.0.2.1"
    )  # the table is full, but it is the same
    assert len(hub) == 1
    with pytest.raises(ExchangeGone):
        hub.take(first.session)
    assert hub.take(second.session).session_id == second.session


async def test_each_step_is_taken_once_and_in_order(stored: verifiers.PinVerifier) -> None:
    hub = pake.HubExchanges()
    appliance = ApplianceExchange("oven", PIN, make_csr())
    prove, session = await start_and_answer(hub, appliance, stored)
    with pytest.raises(ExchangeGone):
        hub.take(prove.session)  # taken already
    early = pake.EnrollRequest(session.session_id, bytes(64))
    with pytest.raises(MalformedRequest, match="send 'prove' first"):
        hub.enroll(session, early)
    await hub.prove(session, prove)
    proven = hub.take(prove.session)
    with pytest.raises(MalformedRequest, match="proven already"):
        await hub.prove(proven, prove)
    with pytest.raises(ValueError, match="another session"):
        hub.enroll(proven, pake.EnrollRequest("another", bytes(64)))
    with pytest.raises(ValueError, match="another appliance's"):
        await hub.start(start_request(appliance_id="fridge"), stored, None)


def test_the_appliance_takes_its_steps_in_order() -> None:
    appliance = ApplianceExchange("oven", PIN, make_csr())
    with pytest.raises(RuntimeError, match="at its new step, not at proving"):
        appliance.confirm(pake.encode({"M2": base64.b64encode(bytes(64)).decode()}))
    appliance.start()
    with pytest.raises(RuntimeError, match="at its started step, not at new"):
        appliance.start()
    assert repr(appliance) == "ApplianceExchange('oven', started)"


# --- malformed messages -------------------------------------------------------------------------------


def _start(**fields: Any) -> bytes:
    a_public = pow(srp6a.G, 99, srp6a.N).to_bytes(srp6a.N_BYTES, "big").lstrip(b"\0")
    message = {"step": "start", "method": srp6a.METHOD, "id": "oven", "A": b64(a_public), "csr": b64(_CSR)}
    return json.dumps({k: v for k, v in (message | fields).items() if v is not None}).encode()


_CSR = make_csr()
_N = srp6a.N.to_bytes(srp6a.N_BYTES, "big")
_PROVE_63 = json.dumps({"step": "prove", "session": "s", "M1": b64(bytes(63))}).encode()
_N_PLUS_1 = (srp6a.N + 1).to_bytes(srp6a.N_BYTES, "big")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "request body is not UTF-8"),
        (b"{", "request body is not JSON"),
        (b"[" * 100_000, "request body is not JSON"),  # nested too deep for the parser
        (b"[]", "request body is not a JSON object"),
        (b'{"step": "start", "step": "prove"}', "has the field step more than once"),
        (b'{"step": "finish"}', "'step' must be \"start\", \"prove\" or \"enroll\""),
        (b"{}", "'step' must be"),
        (_start(method="srp6a-sha256-2048"), "method 'srp6a-sha256-2048' is not offered"),
        (_start(method=None), "field 'method' is missing"),
        (_start(id="oven/../x"), "appliance id must be"),
        (_start(id=7), "field 'id' must be a non-empty string"),
        (_start(id=""), "field 'id' must be a non-empty string"),
        (_start(id="o" * 65), "field 'id' is longer than 64 characters"),
        (_start(A=None), "field 'A' is missing"),
        (_start(A=12), "field 'A' must be a base64 string"),
        (_start(A="!!!!"), "field 'A' is not valid base64"),
        (_start(A="Zm9vY"), "field 'A' is not valid base64 (truncated)"),
        (_start(A="äöü="), "field 'A' is not valid base64"),
        (_start(A=b64(b"\0\1")), "'A' starts with a zero byte"),
        (_start(A=b64(_N)), "'A' is zero modulo N"),
        (_start(A=b64(_N_PLUS_1)), "'A' is not reduced modulo N"),
        (_start(A=b64(b"\1" * 385)), "'A' must be at most 384 bytes"),
        (_start(csr=b64(b"\x04garbage")), "'csr' is not a DER PKCS#10 certificate request"),
        (_start(csr=b64(b"\x30\x03\x02\x01\x00")), "body is not a DER PKCS#10 certificate request"),
        (_PROVE_63, "'M1' must be 64 bytes, not 63"),
        (b'{"step": "prove", "session": "", "M1": "AA=="}', "field 'session' must be a non-empty string"),
        (b'{"step": "prove", "session": "' + b"s" * 65 + b'", "M1": "AA=="}', "'session' is longer than 64"),
        (b'{"step": "enroll", "session": "s"}', "field 'csr_mac' is missing"),
    ],
)  # fmt: skip
def test_a_malformed_message_gets_400_with_its_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedRequest) as refused:
        pake.parse_request(body)
    assert reason in str(refused.value)
    assert status_for(refused.value) == 400


def _challenge(**fields: Any) -> bytes:
    message = {"session": "s1", "salt": b64(b"\1" * 16), "B": b64(b"\2" * 384)}
    return json.dumps({k: v for k, v in (message | fields).items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>", "the hub's challenge is not JSON"),
        (_challenge(B=b64(_N)), "'B' is zero modulo N"),
        (_challenge(B=b64(b"\0" + b"\2" * 383)), "'B' starts with a zero byte"),
        (_challenge(salt=b64(b"\0" * 16)), "the hub's salt starts with a zero byte"),
        (_challenge(salt=b64(b"\1" * 65)), "field 'salt' must be at most 64 bytes, not 65"),
        (_challenge(session=None), "field 'session' is missing"),
    ],
)
def test_a_malformed_challenge_stops_the_appliance(body: bytes, reason: str) -> None:
    appliance = ApplianceExchange("oven", PIN, make_csr())
    appliance.start()
    with pytest.raises(ProtocolError) as refused:
        appliance.answer(body)
    assert reason in str(refused.value)


@pytest.mark.parametrize("case", ["not DER", "another issuer", "another key"])
async def test_an_authenticated_but_unusable_answer_is_a_protocol_error(
    case: str, stored: verifiers.PinVerifier, ca: HouseholdCA
) -> None:
    hub = pake.HubExchanges()
    appliance = ApplianceExchange("oven", PIN, make_csr())
    prove, session = await start_and_answer(hub, appliance, stored)
    hub_proof = await hub.prove(session, prove)
    enroll = pake.parse_request(pake.encode(appliance.confirm(pake.encode(hub_proof.to_dict()))))
    assert isinstance(enroll, pake.EnrollRequest)
    success = hub.enroll(hub.take(enroll.session), enroll)
    ca_der = ca.certificate.public_bytes(Encoding.DER)
    ca_der, certificate_der, reason = {
        "not DER": (b"\x30\x00", issue(ca, success), "not a DER certificate"),
        "another issuer": (ca_der, issue(HouseholdCA.create("Other"), success), "not issued by its CA"),
        "another key": (ca_der, ca_der, "not for this appliance's key"),  # the CA issued itself
    }[case]
    with pytest.raises(ProtocolError, match=reason):
        appliance.conclude(pake.encode(success.final_answer(ca_der, certificate_der).to_dict()))


# --- what the hub stores, and the HTTP Basic PIN check -------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pin_sent_in_basic_is_checked_against_the_verifier(
    backend: srp6a.SrpBackend, stored: verifiers.PinVerifier
) -> None:
    assert stored.matches(PIN, backend)
    assert not stored.matches("482914", backend)
    assert not stored.matches(f" {PIN}", backend)  # exactly the PIN: trimming is the caller's to decide
    assert not stored.matches("", backend)
    assert not stored.matches("4" * 129, backend)


def test_the_verifier_record_round_trips_and_holds_no_pin(stored: verifiers.PinVerifier) -> None:
    data = stored.to_dict()
    assert verifiers.PinVerifier.from_dict(json.loads(json.dumps(data))) == stored
    assert set(data) == {"method", "appliance_id", "salt", "verifier"}
    assert PIN not in json.dumps(data)
    assert "salt" not in repr(stored)
    assert repr(stored) == "PinVerifier(appliance_id='oven')"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"method": "sha256"}, "not a srp6a-sha512-3072 verifier"),
        ({"salt": None}, "needs appliance_id, salt and verifier"),
        ({"salt": "***"}, "are base64"),
        ({"salt": b64(b"\1" * 15)}, "salt is 16 bytes"),
        ({"salt": b64(b"\0" + b"\1" * 15)}, "the first one not zero"),
        ({"verifier": b64(b"\0\1")}, "'verifier' starts with a zero byte"),
        ({"verifier": ""}, "'verifier' is empty"),
        ({"verifier": "AB=C"}, "are base64"),
    ],
)
def test_a_damaged_verifier_record_is_refused(
    stored: verifiers.PinVerifier, change: dict[str, Any], reason: str
) -> None:
    data = {k: v for k, v in (stored.to_dict() | change).items() if v is not None}
    with pytest.raises(ValueError, match=reason):
        verifiers.PinVerifier.from_dict(data)


@pytest.mark.parametrize(
    ("appliance_id", "pin", "reason"),
    [("oven", "", "a PIN is needed"), ("oven", "1" * 129, "longer than 128"), ("a b", PIN, "appliance id")],
)
def test_a_verifier_needs_a_valid_id_and_pin(appliance_id: str, pin: str, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        verifiers.PinVerifier.create(appliance_id, pin)


def test_a_salt_pysrp_makes_too_short_is_made_again() -> None:
    """pysrp's salts are a number's minimal bytes: one in 256 comes out shorter than asked."""
    made: list[int] = []

    def create(appliance_id: str, pin: str, **kwargs: Any) -> tuple[bytes, bytes]:
        kwargs["salt_len"] -= 1 if not made else 0  # the first salt comes out a byte short
        salt, verifier = srp.create_salted_verification_key(appliance_id, pin, **kwargs)
        made.append(len(salt))
        return salt, verifier

    backend = SimpleNamespace(
        SHA512=srp.SHA512, NG_CUSTOM=srp.NG_CUSTOM, create_salted_verification_key=create
    )
    record = verifiers.PinVerifier.create("oven", PIN, backend)
    assert made == [15, 16]
    assert record.verifier == vector.verifier(record.salt, "oven", PIN)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pysrps_own_safety_check_backs_the_parser(
    backend: srp6a.SrpBackend, stored: verifiers.PinVerifier
) -> None:
    """An A the parser would refuse (A = N), handed to the hub directly, is refused by pysrp too."""
    start = start_request()
    unparsed = pake.StartRequest(start.appliance_id, _N, start.csr_der, start.request)
    with pytest.raises(MalformedRequest, match="zero modulo N"):
        await pake.HubExchanges(work=verifiers.ThreadedSrp(backend)).start(unparsed, stored, None)


def test_the_pure_python_backend_takes_the_same_ephemeral_padded() -> None:
    """pysrp's pure-Python backend wants 256 bytes; the 32 the exchange uses are the same number."""
    calls: list[int] = []

    def make(secret: bytes) -> bytes:
        calls.append(len(secret))
        user = srp._pysrp.User("oven", PIN, bytes_a=secret, **srp6a.group(srp._pysrp))
        a_public: bytes = user.start_authentication()[1]
        return a_public

    a_public = srp6a.with_ephemeral(make, vector.A_SECRET)
    assert calls == [32, 256]
    assert int.from_bytes(a_public, "big") == pow(srp6a.G, vector.number(vector.A_SECRET), srp6a.N)


def test_the_hubs_refusals_map_to_their_statuses() -> None:
    assert status_for(ExchangeGone("gone")) == 400
    assert status_for(PairingProofFailed("no")) == 401
    assert issubclass(HubProofFailed, EstError)  # the appliance's own finding, reported like the others
