"""The PIN exchange on the real listener: pre-registered and owner-typed PINs, mistakes, lockout, relays."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
import contextlib
import json
from pathlib import Path
import time

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
import pytest

from custom_components.est_pairing.est import pake
from custom_components.est_pairing.est.batching import WorkGroups
from custom_components.est_pairing.est.errors import (
    EstError,
    ExchangeGone,
    LockedOut,
    NotAllowed,
    PairingProofFailed,
    Rejected,
)
from custom_components.est_pairing.est.limits import FREE_ATTEMPTS, OWNER_PIN_ATTEMPTS
from custom_components.est_pairing.est.policy import (
    Confirmation,
    CredentialKind,
    ExchangeFailure,
    PinGiven,
    Registration,
)
from custom_components.est_pairing.est.server import EstApplication, EstListener
from custom_components.est_pairing.est.service import ServiceListener
from custom_components.est_pairing.est.tls import server_ssl_context
from est_tools.appliance.client import Pending, build_csr, client_ssl_context, error_for
from est_tools.appliance.exchange import PinExchangeClient
from est_tools.appliance.pake_client import ApplianceExchange, Paired

from .conftest import RunningServer, oven_server

EST = "/.well-known/est"
PIN = "123456"  # the pre-registered oven's (conftest)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_der(key: CertificateIssuerPrivateKeyTypes, appliance_id: str = "oven") -> bytes:
    return build_csr(key, appliance_id).public_bytes(serialization.Encoding.DER)


async def attempt(
    server: RunningServer, appliance_id: str, pin: str, key: CertificateIssuerPrivateKeyTypes
) -> Paired | Pending:
    """One whole exchange, as the reference appliance runs it."""
    async with PinExchangeClient(server.url) as client:
        return await client.attempt(ApplianceExchange(appliance_id, pin, csr_der(key, appliance_id)))


class Raw:
    """Messages posted as they are, with every answer's status, headers and body."""

    def __init__(self, server: RunningServer, session: aiohttp.ClientSession) -> None:
        self.url = f"{server.url}{EST}/pake"
        self.session = session

    @contextlib.asynccontextmanager
    async def _posting(
        self, message: dict[str, str] | bytes, content_type: str = "application/json"
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        body = message if isinstance(message, bytes) else pake.encode(message)
        async with self.session.post(
            self.url, data=body, headers={"Content-Type": content_type}, ssl=client_ssl_context(None)
        ) as response:
            yield response

    async def post(
        self, message: dict[str, str] | bytes, content_type: str = "application/json"
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (the status line's reason phrase as "Reason"), body."""
        async with self._posting(message, content_type) as response:
            headers = {**response.headers, "Reason": response.reason or ""}
            return response.status, headers, await response.read()

    async def refusal(self, message: dict[str, str]) -> EstError:
        """The error the reference appliance takes the hub's refusal of ``message`` for."""
        async with self._posting(message) as response:
            assert response.status >= 400, response.status
            return error_for(response, await response.text())


class Exchanges(ServiceListener):
    """What the server told the application about PIN exchanges."""

    def __init__(self) -> None:
        self.failed: list[ExchangeFailure] = []
        self.approved: list[Registration] = []

    def exchange_failed(self, failure: ExchangeFailure) -> None:
        self.failed.append(failure)

    def exchange_approved(self, registration: Registration) -> None:
        self.approved.append(registration)


@pytest.fixture
def exchanges() -> Exchanges:
    return Exchanges()


@pytest.fixture
async def server(tmp_path: Path, exchanges: Exchanges) -> AsyncIterator[RunningServer]:
    """The conftest's server (``oven`` pre-registered with PIN 123456), telling ``exchanges``."""
    async with oven_server(tmp_path, exchanges) as running:
        yield running


@pytest.fixture
async def raw(server: RunningServer) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(server, session)


async def test_the_listener_offers_the_exchange(server: RunningServer, raw: Raw) -> None:
    for path in (f"{EST}/pake", f"{EST}/appliance/pake"):
        async with raw.session.get(server.url + path, ssl=client_ssl_context(None)) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/json")
            assert json.loads(await response.read()) == {"methods": ["srp6a-sha512-3072"]}
    async with raw.session.head(f"{server.url}{EST}/pake", ssl=client_ssl_context(None)) as response:
        assert response.status == 200
    async with raw.session.put(f"{server.url}{EST}/pake", ssl=client_ssl_context(None)) as response:
        assert (response.status, response.headers["Allow"]) == (405, "POST, GET, HEAD")
    async with PinExchangeClient(server.url) as client:
        assert await client.offered()


async def test_a_preregistered_appliance_pairs_unattended_and_pins_the_hubs_ca(server: RunningServer) -> None:
    key = new_key()
    paired = await attempt(server, "oven", PIN, key)
    assert isinstance(paired, Paired)
    assert paired.ca == server.service.ca.certificate
    assert paired.certificate.public_key() == key.public_key()
    assert paired.certificate.subject.rfc4514_string() == "CN=oven"
    (record,) = server.service.ledger.for_appliance("oven")  # recorded before the answer
    assert record.serial_number == paired.certificate.serial_number
    registration = server.service.policy.registration("oven")
    assert registration is not None and not registration.preregistered
    assert registration.keys == {record.key_fingerprint}

    again = await attempt(server, "oven", PIN, key)  # its answer was lost: the same certificate
    assert isinstance(again, Paired) and again.certificate == paired.certificate
    other = await attempt(server, "oven", PIN, new_key())  # a PIN admits one key: another waits
    assert isinstance(other, Pending)
    assert len(server.service.ledger) == 1


async def test_an_exchange_that_uses_a_pre_registration_is_answered_once_that_is_saved(
    server: RunningServer,
) -> None:
    """Answered first, a crash would leave the pre-registration unused on disk, to admit another key."""
    await server.service.flush(check=True)
    approvals = server.data_dir / "policy.json"
    approvals.unlink()
    approvals.mkdir()  # a path the approvals cannot be written to, whoever runs the test
    key = new_key()
    with pytest.raises(EstError, match=r"^500: the approvals could not be saved; nothing was issued$"):
        await attempt(server, "oven", PIN, key)
    assert server.service.ledger.for_appliance("oven") == []
    approvals.rmdir()
    paired = await attempt(server, "oven", PIN, key)  # the appliance tries again: saved, then answered
    assert isinstance(paired, Paired)
    (saved,) = json.loads(approvals.read_text())["registrations"]
    assert (saved["appliance_id"], saved["preregistered"]) == ("oven", False)


async def test_a_proof_goes_on_while_the_requests_that_carry_a_csr_or_a_signature_wait_for_their_group(
    server: RunningServer, raw: Raw
) -> None:
    """The work groups hold CSR checks and signatures; a prove is the SRP worker's and is not held."""
    service = server.service
    application = EstApplication(service.registrar, work=service.srp)
    context = server_ssl_context(service.listener_identity, service.ca.certificate)
    listener = EstListener(application, host="127.0.0.1", port=0, ssl_context=context)
    await listener.start()
    try:
        raw.url = f"https://127.0.0.1:{listener.port}{EST}/pake"
        key = new_key()
        exchange = ApplianceExchange("oven", PIN, csr_der(key))
        status, _, challenge = await raw.post(exchange.start())
        assert status == 200
        hold = 2.0
        application.work_groups = WorkGroups(gather=hold, idle_turn=0)  # a group goes on after `hold` only

        started = time.monotonic()
        status, _, hub_proof = await raw.post(exchange.answer(challenge))
        assert status == 200
        assert time.monotonic() - started < hold / 2

        started = time.monotonic()
        status, _, final = await raw.post(exchange.confirm(hub_proof))  # a signature: its group's turn
        assert status == 200
        assert time.monotonic() - started >= hold
        paired = exchange.conclude(final)
        assert (paired.ca, paired.certificate.public_key()) == (service.ca.certificate, key.public_key())
    finally:
        await listener.stop()


async def test_an_unknown_appliance_waits_for_its_pin_then_pairs(
    server: RunningServer, raw: Raw, exchanges: Exchanges
) -> None:
    policy = server.service.policy
    approved = exchanges.approved
    key = new_key()
    exchange = ApplianceExchange("fridge", "246810", csr_der(key, "fridge"))
    status, headers, body = await raw.post(exchange.start())
    assert (status, headers["Retry-After"], headers["Content-Length"], body) == (202, "1", "0", b"")

    (pending,) = policy.pending_requests()
    assert (pending.appliance_id, pending.kind) == ("fridge", CredentialKind.PAKE)
    assert policy.review(pending.request_id).confirmations == (Confirmation.PIN,)
    with pytest.raises(NotAllowed, match="pairs through the PIN exchange: approve it with the PIN"):
        await policy.approve(pending.request_id)
    given = await policy.approve(pending.request_id, pin=" 246810 ")
    assert isinstance(given, PinGiven)
    assert policy.registration("fridge") is None  # nothing approved before the exchange proves the PIN
    assert "246810" not in json.dumps(policy.export())

    paired = await attempt(server, "fridge", "246810", key)
    assert isinstance(paired, Paired)
    assert paired.ca == server.service.ca.certificate
    (registration,) = approved
    assert registration == policy.registration("fridge")
    assert registration.kind is CredentialKind.PIN
    assert registration.verifier is not None and registration.verifier.matches("246810")
    assert policy.pending_requests() == []


async def test_a_mistyped_pin_fails_the_exchange_says_so_and_can_be_typed_again(
    server: RunningServer, raw: Raw, exchanges: Exchanges
) -> None:
    policy = server.service.policy
    failures = exchanges.failed
    key = new_key()
    assert isinstance(await attempt(server, "fridge", "246810", key), Pending)
    (pending,) = policy.pending_requests()
    assert isinstance(await policy.approve(pending.request_id, pin="246801"), PinGiven)  # two digits swapped

    exchange = ApplianceExchange("fridge", "246810", csr_der(key, "fridge"))
    status, _, body = await raw.post(exchange.start())
    assert status == 200
    status, headers, body = await raw.post(exchange.answer(body))
    assert status == 401
    assert "WWW-Authenticate" not in headers  # a challenge would invite the PIN over HTTP Basic
    assert (headers["Content-Length"], body) == ("0", b"")
    assert [(f.appliance_id, f.pending, f.attempts_left) for f in failures] == [
        ("fridge", pending, OWNER_PIN_ATTEMPTS - 1)
    ]
    assert pending.exchange_failed and pending.verifier is None  # back to waiting for the owner
    assert isinstance(await attempt(server, "fridge", "246810", key), Pending)
    assert len(server.service.ledger) == 0

    assert isinstance(await policy.approve(pending.request_id, pin="246810"), PinGiven)
    assert isinstance(await attempt(server, "fridge", "246810", key), Paired)


async def test_the_owner_who_gave_the_pin_hears_how_the_next_exchange_went(server: RunningServer) -> None:
    policy = server.service.policy
    key = new_key()
    assert isinstance(await attempt(server, "fridge", "246810", key), Pending)
    (pending,) = policy.pending_requests()

    assert isinstance(await policy.approve(pending.request_id, pin="246801"), PinGiven)
    told = policy.next_exchange(pending.request_id)
    with pytest.raises(PairingProofFailed):
        await attempt(server, "fridge", "246810", key)
    assert await told == ExchangeFailure("fridge", pending, OWNER_PIN_ATTEMPTS - 1)

    assert isinstance(await policy.approve(pending.request_id, pin="246810"), PinGiven)
    told = policy.next_exchange(pending.request_id)
    assert not told.done()  # nothing is known before the appliance's next exchange
    assert isinstance(await attempt(server, "fridge", "246810", key), Paired)
    assert await told == policy.registration("fridge")


async def test_failed_exchanges_count_like_wrong_pins(server: RunningServer, exchanges: Exchanges) -> None:
    failures = exchanges.failed
    key = new_key()
    for _ in range(FREE_ATTEMPTS):
        with pytest.raises(PairingProofFailed, match="does not know the PIN the hub has for it"):
            await attempt(server, "oven", "000000", key)
    assert failures == [ExchangeFailure("oven")] * FREE_ATTEMPTS  # a pre-registration's PIN: no request
    for pin in ("000000", PIN):
        with pytest.raises(LockedOut, match="too many wrong secrets for this appliance"):
            await attempt(server, "oven", pin, key)
    assert len(server.service.ledger) == 0


async def test_a_relay_that_swaps_in_its_own_request_gets_no_certificate(
    server: RunningServer, raw: Raw
) -> None:
    """It forwards the appliance's messages but puts its own key's request in the start."""
    exchange = ApplianceExchange("oven", PIN, csr_der(new_key()))
    relays_request = base64.b64encode(csr_der(new_key())).decode()
    status, _, body = await raw.post({**exchange.start(), "csr": relays_request})
    assert status == 200
    status, _, body = await raw.post(exchange.answer(body))
    assert status == 200  # the appliance's PIN is right
    status, headers, _ = await raw.post(exchange.confirm(body))
    assert (status, "WWW-Authenticate" in headers) == (401, False)
    assert "the certificate request is not the one it started with" in headers["Reason"]
    assert len(server.service.ledger) == 0
    registration = server.service.policy.registration("oven")
    assert registration is not None and registration.preregistered  # still unused


async def test_the_appliance_tells_the_exchanges_own_refusals_by_their_words(
    server: RunningServer, raw: Raw
) -> None:
    """A failed proof and an exchange to start again share 401 and 400 with other refusals.

    Only words of their reasons tell them apart: every one the hub gives must carry them unchanged
    (appliances in the field match them), and the reference appliance must read them.
    """
    policy = server.service.policy
    key = new_key()
    assert isinstance(await attempt(server, "fridge", "246810", key), Pending)
    (pending,) = policy.pending_requests()
    fridge = ApplianceExchange("fridge", "246810", csr_der(key, "fridge"))
    await policy.approve(pending.request_id, pin="246810")
    _, _, challenge = await raw.post(fridge.start())
    _, _, hub_proof = await raw.post(fridge.answer(challenge))
    await policy.approve(pending.request_id, pin="246811")  # the owner typed another PIN meanwhile
    pin_changed = await raw.refusal(fridge.confirm(hub_proof))

    unknown = await raw.refusal({"step": "prove", "session": "gone", "M1": "A" * 86 + "=="})
    wrong_pin = ApplianceExchange("oven", "000000", csr_der(new_key()))
    _, _, challenge = await raw.post(wrong_pin.start())
    not_known = await raw.refusal(wrong_pin.answer(challenge))
    relayed = ApplianceExchange("oven", PIN, csr_der(new_key()))
    _, _, challenge = await raw.post(
        {**relayed.start(), "csr": base64.b64encode(csr_der(new_key())).decode()}
    )
    _, _, hub_proof = await raw.post(relayed.answer(challenge))
    swapped = await raw.refusal(relayed.confirm(hub_proof))

    for refusal, kind, words in [
        (unknown, ExchangeGone, "start again"),
        (pin_changed, ExchangeGone, "start again"),
        (not_known, PairingProofFailed, "the PIN exchange failed"),
        (swapped, PairingProofFailed, "the PIN exchange failed"),
    ]:
        assert (type(refusal), words in str(refusal)) == (kind, True), refusal
    assert len(server.service.ledger) == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"not json", "application/json", 400, "request body is not JSON"),
        (b'{"step": "dance"}', "application/json", 400, "field 'step' must be"),
        (
            b'{"step": "prove", "session": "gone", "M1": "' + b"A" * 86 + b'=="}',
            "application/json",
            400,
            "start again",
        ),
        (b"{}", "application/pkcs10", 415, "send the PIN exchange's messages as application/json"),
        (b"", "application/json", 400, "request body is empty"),
        # A lone surrogate, which UTF-8 cannot carry, in a field name the reason repeats.
        (b'{"\\ud800": 1, "\\ud800": 2}', "application/json", 400, "has the field \\ud800 more than once"),
    ],
)
async def test_a_malformed_message_gets_its_reason(
    raw: Raw, body: bytes, content_type: str, status: int, reason: str
) -> None:
    answer_status, headers, answer = await raw.post(body, content_type)
    assert answer_status == status
    assert headers["Content-Type"].startswith("text/plain")
    assert reason in answer.decode()


async def test_a_compressed_message_is_refused_with_its_reason(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        answer = await session.post(
            f"{server.url}{EST}/pake",
            data=b"{}",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            ssl=client_ssl_context(None),
        )
        assert answer.status == 415
        assert (
            await answer.text()
        ).strip() == "send the PIN exchange's messages uncompressed (no Content-Encoding)"


async def test_a_rejected_request_is_refused_at_its_next_start(server: RunningServer) -> None:
    key = new_key()
    assert isinstance(await attempt(server, "fridge", "246810", key), Pending)
    (pending,) = server.service.policy.pending_requests()
    server.service.policy.reject(pending.request_id)
    with pytest.raises(Rejected, match="the owner rejected this appliance"):
        await attempt(server, "fridge", "246810", key)


async def test_a_basic_client_still_pairs_with_a_pin_the_hub_keeps_as_a_verifier(
    server: RunningServer,
) -> None:
    """curl, libest, Bouncy Castle: HTTP Basic id:PIN, checked against the pre-registration's verifier."""
    key = new_key()
    async with server.client() as client:
        certificate = await client.enroll(build_csr(key, "oven"), username="oven", password=PIN)
    assert isinstance(certificate, x509.Certificate)
    assert certificate.public_key() == key.public_key()
