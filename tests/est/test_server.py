"""The EST listener over real TLS on 127.0.0.1: every operation and every status path."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import gzip
import logging
from pathlib import Path
import re
import ssl
from unittest.mock import patch

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDictProxy
import pytest

from custom_components.est_pairing.est import server as server_module, wire
from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.csr import inspect_request
from custom_components.est_pairing.est.errors import CertificateRevoked, NameTaken
from custom_components.est_pairing.est.limits import (
    FREE_ATTEMPTS,
    LOCKOUT_BASE,
    MAX_BODY_BYTES,
    PENDING_MAX,
    PENDING_MAX_PER_ADDRESS,
)
from custom_components.est_pairing.est.policy import digest_secret
from custom_components.est_pairing.est.registrar import Peer
from custom_components.est_pairing.est.server import BUSY_WARNING_INTERVAL
from est_tools.appliance.client import build_csr, client_ssl_context, renewal_csr

from . import forge, rawhttp
from .conftest import RunningServer, oven_server
from .loops import on_each_loop
from .polling import eventually

EST = "/.well-known/est"


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    reason: str = ""  # the status line's reason phrase

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


type Call = Callable[..., Awaitable[Answer]]  # the `call` fixture: (method, path, **options) -> Answer


@dataclass
class Appliance:
    """A key plus the CSR an appliance with this id sends."""

    appliance_id: str
    key: CertificateIssuerPrivateKeyTypes

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        return build_csr(self.key, self.appliance_id)

    @property
    def body(self) -> bytes:
        return wire.encode_base64(self.csr.public_bytes(serialization.Encoding.DER))


def appliance(appliance_id: str = "oven") -> Appliance:
    return Appliance(appliance_id, ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
async def call(server: RunningServer) -> AsyncIterator[Call]:
    """``await call(method, path, body=..., auth=(user, pin), tls=(cert, key), headers=...)``."""
    session = aiohttp.ClientSession()
    anonymous = client_ssl_context(server.service.ca.certificate)

    async def request(
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = wire.PKCS10,
        auth: tuple[str, str] | None = None,
        tls: tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        all_headers = dict(headers or {})
        if body is not None and content_type:
            all_headers["Content-Type"] = content_type
        if auth is not None:
            all_headers["Authorization"] = wire.basic_authorization(*auth)
        context: ssl.SSLContext = anonymous
        if tls is not None:
            context = client_ssl_context(
                server.service.ca.certificate, certificate=tls[0], private_key=tls[1]
            )
        async with session.request(
            method, server.url + path, data=body, headers=all_headers, ssl=context
        ) as response:
            return Answer(response.status, response.headers, await response.read(), response.reason or "")

    yield request
    await session.close()


def assert_refusal(answer: Answer, status: int, reason: str) -> None:
    assert answer.status == status, answer.text
    if status == 401:  # no body (Bouncy Castle fails on one): the reason is the status line's
        assert (answer.headers["Content-Length"], answer.body) == ("0", b"")
        assert "Content-Type" not in answer.headers
        assert reason in answer.reason
        return
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert answer.text.count("\n") == 1
    assert reason in answer.text


def certificate_from(answer: Answer) -> x509.Certificate:
    assert answer.status == 200, answer.text
    assert answer.headers["Content-Type"] == wire.CERTS_ONLY
    assert answer.headers["Content-Transfer-Encoding"] == "base64"
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    (certificate,) = wire.decode_certs_only(answer.body)
    return certificate


# --- unauthenticated operations --------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [EST, f"{EST}/appliance"])
async def test_cacerts(server: RunningServer, call: Call, prefix: str) -> None:
    answer = await call("GET", f"{prefix}/cacerts")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/pkcs7-mime"
    assert answer.headers["Content-Transfer-Encoding"] == "base64"
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    assert all(len(line) <= 64 for line in answer.body.split(b"\r\n"))
    assert wire.decode_certs_only(answer.body) == [server.service.ca.certificate]


@pytest.mark.parametrize("prefix", [EST, f"{EST}/appliance"])
async def test_csrattrs(call: Call, prefix: str) -> None:
    answer = await call("GET", f"{prefix}/csrattrs")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/csrattrs"
    assert answer.headers["Content-Transfer-Encoding"] == "base64"
    attributes = wire.decode_csrattrs(wire.decode_body(answer.body))
    assert [a.oid.dotted_string for a in attributes] == ["1.2.840.10045.3.1.7", "1.2.840.10045.4.3.2"]


async def test_crl_is_signed_by_the_ca(server: RunningServer, call: Call) -> None:
    answer = await call("GET", "/crl")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(answer.body)
    ca_key = server.service.ca.certificate.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_key)
    assert len(crl) == 0


@pytest.mark.parametrize("path", [f"{EST}/cacerts", f"{EST}/appliance/csrattrs", "/crl"])
async def test_head_works_wherever_get_does(server: RunningServer, path: str) -> None:
    """RFC 9110: the GET answer's headers, no body (the next answer on the connection proves it)."""
    context = rawhttp.tls_context(server.service.ca.certificate_pem)
    async with rawhttp.connect(server.service.port, tls=context) as connection:
        await connection.send(rawhttp.http_request("HEAD", path))
        head = await connection.response(to_head=True)
        await connection.send(rawhttp.http_request("GET", path))
        get = await connection.response()
    assert head is not None
    assert get is not None, "the HEAD answer carried a body"
    assert (head.status, get.status) == (200, 200)
    assert head.body == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) == len(get.body) > 0


async def test_head_is_not_allowed_where_get_is_not(call: Call) -> None:
    answer = await call("HEAD", f"{EST}/simpleenroll")
    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"
    assert (await call("POST", f"{EST}/cacerts", body=b"x")).headers["Allow"] == "GET, HEAD"
    assert (await call("POST", "/crl", body=b"x")).headers["Allow"] == "GET, HEAD"


# --- the status-code table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "reason"),
    [
        ("GET", f"{EST}/nosuchop", {}, 404, "unknown EST operation"),
        ("GET", f"{EST}/nolabel/cacerts", {}, 404, "unknown EST label"),
        # aiohttp's client resolves the dot segment (/.well-known/cacerts): the router's own 404. Sent
        # as is (rawhttp), the same path gets "unknown EST label": ".." is taken for a label.
        ("GET", f"{EST}/../cacerts", {}, 404, "Not Found"),
        ("GET", f"{EST}/appliance/extra/cacerts", {}, 404, "Not Found"),
        ("GET", "/", {}, 404, "Not Found"),
        ("POST", f"{EST}/cacerts", {"body": b"x"}, 405, "GET only"),
        ("GET", f"{EST}/simpleenroll", {}, 405, "POST only"),
        ("DELETE", f"{EST}/appliance/simplereenroll", {}, 405, "POST only"),
        ("POST", "/crl", {"body": b"x"}, 405, "GET"),
        ("POST", f"{EST}/fullcmc", {"body": b"x"}, 501, "full CMC"),
        ("POST", f"{EST}/simpleenroll", {"body": b"MIIB", "content_type": "text/plain"}, 415, "pkcs10"),
        ("POST", f"{EST}/simpleenroll", {"body": b"MIIB", "content_type": None}, 415, "pkcs10"),
        (
            "POST",
            f"{EST}/simpleenroll",
            {"body": gzip.compress(b"MAA="), "headers": {"Content-Encoding": "gzip"}},
            415,
            "uncompressed",
        ),
        ("POST", f"{EST}/simpleenroll", {"body": b"!!"}, 400, "not valid base64"),
        ("POST", f"{EST}/simpleenroll", {"body": b"MAA="}, 400, "not a DER PKCS#10"),
        ("POST", f"{EST}/simpleenroll", {"body": b""}, 400, "empty"),
        ("POST", f"{EST}/simpleenroll", {"body": b"x" * (MAX_BODY_BYTES + 1)}, 413, "over"),
        ("POST", f"{EST}/serverkeygen", {"body": b"@@"}, 400, "not valid base64"),
        ("POST", f"{EST}/simplereenroll", {"body": b"@@"}, 400, "not valid base64"),
    ],
)
async def test_refusals(
    call: Call, method: str, path: str, kwargs: dict[str, object], status: int, reason: str
) -> None:
    assert_refusal(await call(method, path, **kwargs), status, reason)


async def test_media_type_parameters_and_case_are_accepted(call: Call) -> None:
    oven = appliance()
    answer = await call(
        "POST",
        f"{EST}/simpleenroll",
        body=oven.body,
        content_type="Application/PKCS10; charset=us-ascii",
        auth=("oven", "123456"),
    )
    assert certificate_from(answer).public_key() == oven.key.public_key()


async def test_base64_without_its_padding_is_accepted(call: Call) -> None:
    """Deployed clients differ: some leave the trailing ``=`` off."""
    oven = appliance()
    der = oven.csr.public_bytes(serialization.Encoding.DER)  # each .csr is signed afresh
    while len(der) % 3 == 0:  # then its base64 has no padding to leave off
        der = oven.csr.public_bytes(serialization.Encoding.DER)
    unpadded = base64.b64encode(der).rstrip(b"=")
    assert len(unpadded) % 4 in {2, 3}
    answer = await call("POST", f"{EST}/simpleenroll", body=unpadded, auth=("oven", "123456"))
    assert certificate_from(answer).public_key() == oven.key.public_key()
    truncated = unpadded[: len(unpadded) - len(unpadded) % 4 + 1]  # 1 mod 4: not base64 at all
    assert_refusal(
        await call("POST", f"{EST}/simpleenroll", body=truncated, auth=("oven", "123456")),
        400,
        "not valid base64",
    )


async def test_chunked_upload_is_accepted_and_over_limit_is_413(server: RunningServer) -> None:
    oven = appliance()
    context = client_ssl_context(server.service.ca.certificate)

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    async with aiohttp.ClientSession() as session:
        headers = {"Content-Type": wire.PKCS10, "Authorization": wire.basic_authorization("oven", "123456")}
        async with session.post(
            f"{server.url}{EST}/simpleenroll", data=chunks(oven.body), headers=headers, ssl=context
        ) as response:
            assert response.headers.get("Transfer-Encoding") is None
            assert response.status == 200
        async with session.post(
            f"{server.url}{EST}/simpleenroll",
            data=chunks(b"A" * (MAX_BODY_BYTES + 500)),
            headers=headers,
            ssl=context,
        ) as response:
            assert response.status == 413


# --- first enrollment -------------------------------------------------------------------------------


async def test_no_credentials_gets_a_quoted_basic_challenge(call: Call) -> None:
    answer = await call("POST", f"{EST}/simpleenroll", body=appliance().body)
    assert_refusal(answer, 401, "authenticate")
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="EST Appliance Pairing"')


@pytest.mark.parametrize("operation", ["simpleenroll", "serverkeygen"])
async def test_the_challenge_and_the_202_have_no_body(
    call: Call, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    """Bouncy Castle's EST client closes a 401 or a 202 without reading it, and fails on any body it
    left unread ("Stream closed before limit fully read"): neither has one. The reason is in the
    status line, for people and clients that show it, and in the debug log."""
    caplog.set_level(logging.DEBUG, logger="custom_components.est_pairing.est")
    fridge = appliance("fridge")
    challenge = await call("POST", f"{EST}/{operation}", body=fridge.body)
    waiting = await call("POST", f"{EST}/{operation}", body=fridge.body, auth=("fridge", "424242"))
    for answer, status in ((challenge, 401), (waiting, 202)):
        assert (answer.status, answer.headers["Content-Length"], answer.body) == (status, "0", b"")
        assert "Content-Type" not in answer.headers
    authenticate = "authenticate with the appliance id and PIN (HTTP Basic) or a factory certificate"
    assert challenge.reason == authenticate
    assert challenge.headers["WWW-Authenticate"].startswith('Basic realm="EST Appliance Pairing"')
    assert waiting.reason == "waiting for the owner to approve this appliance"
    assert waiting.headers["Retry-After"] == "1"
    assert f"EST refused a request with 401: {authenticate}" in caplog.text
    assert "EST answered 202: fridge waits for the owner" in caplog.text


def test_a_reason_in_the_status_line_is_printable_ascii() -> None:
    """The status line is bytes every client parses its own way: anything else is escaped."""
    response = server_module._bodiless(401, "caf\u00e9\u202e\x00\tlocked\n")
    assert (response.reason, response.body) == ("caf\\xe9\\u202e\\x00 locked", None)


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Basic", "missing after 'Basic'"),
        ("Basic " + base64.b64encode(b"oven").decode(), "no ':' between user and password"),
        ("Basic %%%", "not valid base64"),
        ("Basic " + base64.b64encode(b"oven:\xff\xfe").decode(), "not UTF-8"),
        ("Bearer x", "only HTTP Basic"),  # with no client certificate to fall back on
    ],
)
async def test_unreadable_basic_credentials_get_the_challenge(
    call: Call, authorization: str, reason: str
) -> None:
    """Like missing or wrong credentials: 401 and a challenge, so the client asks again."""
    answer = await call(
        "POST", f"{EST}/simpleenroll", body=appliance().body, headers={"Authorization": authorization}
    )
    assert_refusal(answer, 401, reason)
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="EST Appliance Pairing"')


async def test_preregistered_appliance_enrolls_at_once(server: RunningServer, call: Call) -> None:
    oven = appliance()
    answer = await call("POST", f"{EST}/simpleenroll", body=oven.body, auth=("oven", "123456"))
    certificate = certificate_from(answer)
    certificate.verify_directly_issued_by(server.service.ca.certificate)
    assert certificate.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oven")])
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_agreement and not usage.key_cert_sign
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certificate.serial_number.bit_length() > 64
    cdp = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"{server.url}/crl"  # where it listens, not "localhost"
    assert server.service.ledger.get(certificate.serial_number) is not None


async def test_a_preregistration_is_used_once(server: RunningServer, call: Call) -> None:
    """A captured or guessed PIN must not mint certificates for key after key, unknown to the owner."""
    first, second, third = appliance(), appliance(), appliance()
    answer = await call("POST", f"{EST}/simpleenroll", body=first.body, auth=("oven", "123456"))
    certificate = certificate_from(answer)
    registration = server.service.policy.registration("oven")
    assert registration is not None
    assert not registration.preregistered  # it became the owner's approval of that key
    assert registration.keys == {inspect_request(first.csr).key_fingerprint}
    for other in (second, third):
        later = await call("POST", f"{EST}/simpleenroll", body=other.body, auth=("oven", "123456"))
        assert later.status == 202, later.text  # another key: the owner decides
    assert len(server.service.policy.pending_requests()) == 2
    # The first key's retry (its answer was lost, say) still gets its certificate, the same one.
    again = await call("POST", f"{EST}/simpleenroll", body=first.body, auth=("oven", "123456"))
    assert certificate_from(again) == certificate
    assert len(server.service.ledger) == 1


async def test_wrong_pin_is_401_and_locks_out_after_free_attempts(call: Call) -> None:
    oven = appliance()
    for _ in range(FREE_ATTEMPTS):
        answer = await call("POST", f"{EST}/simpleenroll", body=oven.body, auth=("oven", "000000"))
        assert_refusal(answer, 401, "wrong secret")
    locked = await call("POST", f"{EST}/simpleenroll", body=oven.body, auth=("oven", "123456"))
    assert_refusal(locked, 429, "locked")
    assert LOCKOUT_BASE - 10 <= int(locked.headers["Retry-After"]) <= LOCKOUT_BASE  # the first lockout


async def test_a_twin_repeating_its_own_secret_does_not_forgive_wrong_pins(
    server: RunningServer, call: Call
) -> None:
    """A request waiting under an appliance's id proves only the secret it chose itself.

    One left waiting before the appliance was paired (twins may wait side by side) is retried with
    that secret; were each retry to forgive the wrong PINs counted against the id, its sender could
    guess the appliance's PIN between retries without ever being locked out.
    """
    twin = appliance("fridge")
    assert (
        await call("POST", f"{EST}/simpleenroll", body=twin.body, auth=("fridge", "000000"))
    ).status == 202
    fridge = appliance("fridge")
    assert (
        await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", "424242"))
    ).status == 202
    (pending,) = [
        p
        for p in server.service.policy.pending_requests()
        if p.key_fingerprint == inspect_request(fridge.csr).key_fingerprint
    ]
    await server.service.policy.approve(pending.request_id, pin="424242")
    guesser = appliance("fridge")
    for guess in range(FREE_ATTEMPTS):
        if guess:  # between two guesses the twin asks again, with its own secret
            retry = await call("POST", f"{EST}/simpleenroll", body=twin.body, auth=("fridge", "000000"))
            assert retry.status == 202
        answer = await call("POST", f"{EST}/simpleenroll", body=guesser.body, auth=("fridge", f"{guess:06d}"))
        assert_refusal(answer, 401, "wrong secret")
    locked = await call("POST", f"{EST}/simpleenroll", body=guesser.body, auth=("fridge", "999999"))
    assert_refusal(locked, 429, "locked")


@pytest.mark.parametrize(
    ("operation", "credentials", "common_name", "status", "reason"),
    [
        ("simpleenroll", ("oven", "000000"), "grill", 401, "wrong secret for appliance oven"),
        ("simpleenroll", ("oven", "123456"), "grill", 403, "names 'grill' but the credential is for 'oven'"),
        ("simpleenroll", None, "grill", 401, "authenticate with the appliance id and PIN"),
        ("simpleenroll", ("oven", "000000"), "oven", 401, "wrong secret for appliance oven"),
        ("simpleenroll", ("fridge", "000000"), "grill", 401, "wrong secret for appliance fridge"),
        (
            "simpleenroll",
            ("fridge", "424242"),
            "grill",
            403,
            "names 'grill' but the credential is for 'fridge'",
        ),
        ("serverkeygen", ("oven", "000000"), "grill", 401, "wrong secret for appliance oven"),
        ("serverkeygen", ("oven", "123456"), "grill", 403, "names 'grill' but the credential is for 'oven'"),
        ("serverkeygen", ("oven", ""), "oven", 401, "wrong secret for appliance oven"),
        ("serverkeygen", ("fridge", ""), "fridge", 401, "wrong secret for appliance fridge"),
        ("serverkeygen", None, "oven", 401, "authenticate with the appliance id and PIN"),
    ],
    ids=[
        "enroll-wrong-secret-wrong-name",
        "enroll-right-secret-wrong-name",
        "enroll-no-credentials",
        "enroll-wrong-secret",
        "waiting-wrong-secret-wrong-name",
        "waiting-right-secret-wrong-name",
        "keygen-wrong-secret-wrong-name",
        "keygen-right-secret-wrong-name",
        "keygen-no-secret-for-a-pin",
        "keygen-waiting-no-secret-for-a-pin",
        "keygen-no-credentials",
    ],
)
async def test_authentication_comes_before_what_the_request_asks(
    server: RunningServer,
    call: Call,
    operation: str,
    credentials: tuple[str, str] | None,
    common_name: str,
    status: int,
    reason: str,
) -> None:
    """A wrong or missing secret is 401 with the challenge whatever the request asks (RFC 7235 §3.1);
    403 is for a requester that proved who it is. Secrets are kept for the pre-registered ``oven``
    (123456) and for ``fridge``'s request waiting for the owner (424242, same key). Either way the
    owner is not asked and nothing is issued."""
    fridge_key = ec.generate_private_key(ec.SECP256R1())
    waiting = await call(
        "POST", f"{EST}/simpleenroll", body=Appliance("fridge", fridge_key).body, auth=("fridge", "424242")
    )
    assert waiting.status == 202
    key = fridge_key if credentials is not None and credentials[0] == "fridge" else appliance().key
    answer = await call("POST", f"{EST}/{operation}", body=Appliance(common_name, key).body, auth=credentials)
    assert_refusal(answer, status, reason)
    assert ("WWW-Authenticate" in answer.headers) == (status == 401)
    assert [p.appliance_id for p in server.service.policy.pending_requests()] == ["fridge"]
    assert server.service.ledger.for_appliance("oven") == server.service.ledger.for_appliance("fridge") == []


async def test_unknown_appliance_waits_for_the_owner_then_gets_200(server: RunningServer, call: Call) -> None:
    fridge = appliance("fridge")
    first = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", "424242"))
    assert first.status == 202
    assert first.headers["Retry-After"].isdigit()
    assert int(first.headers["Content-Length"]) == len(first.body)
    (pending,) = server.service.policy.pending_requests()
    assert pending.appliance_id == "fridge"
    again = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", "424242"))
    assert again.status == 202
    assert len(server.service.policy.pending_requests()) == 1

    await server.service.policy.approve(pending.request_id, pin="424242")
    answer = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", "424242"))
    assert certificate_from(answer).public_key() == fridge.key.public_key()


async def test_pending_requests_from_one_address_are_bounded_with_429(call: Call) -> None:
    """The requester's own doing: 429 with Retry-After, never a 5xx."""
    for index in range(PENDING_MAX_PER_ADDRESS):
        answer = await call(
            "POST", f"{EST}/simpleenroll", body=appliance(f"a{index}").body, auth=(f"a{index}", "1")
        )
        assert answer.status == 202
    answer = await call("POST", f"{EST}/simpleenroll", body=appliance("b").body, auth=("b", "1"))
    assert_refusal(answer, 429, "waiting from this address")
    assert int(answer.headers["Retry-After"]) >= 1


async def test_a_full_server_answers_503_and_warns_once_not_per_request(
    server: RunningServer, call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    """The overall bound on waiting requests is the server's state, worth a warning; but any device
    on the LAN can provoke the 503 at will, so one warning per interval, not one per request."""
    registrar = server.service.registrar
    for index in range(PENDING_MAX):  # from many addresses, as a crowd of appliances would
        address = f"10.0.{index // 200}.{index % 200}"
        credentials = BasicCredentials(f"a{index}", "1")
        await registrar.enroll(Peer(address, credentials), appliance(f"a{index}").csr)
    listener = server.service._listener
    assert listener is not None
    limiter = listener.application.busy_warning
    now = 1000.0
    limiter.clock = lambda: now
    caplog.set_level(logging.DEBUG, logger="custom_components.est_pairing.est")

    async def refused(count: int) -> list[str]:
        caplog.clear()
        for _ in range(count):
            answer = await call("POST", f"{EST}/simpleenroll", body=appliance("b").body, auth=("b", "1"))
            assert_refusal(answer, 503, "too many requests are waiting")
            assert int(answer.headers["Retry-After"]) >= 1
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    assert await refused(5) == [
        "EST answered 503: too many requests are waiting for the owner (the next ones are logged at"
        " debug level for 600 s)"
    ]
    now += BUSY_WARNING_INTERVAL - 1
    assert await refused(3) == []
    now += 1
    assert await refused(2) == [
        "EST answered 503: too many requests are waiting for the owner (7 more since the last warning;"
        " the next ones are logged at debug level for 600 s)"
    ]


async def test_fullcmc_is_not_offered_and_that_is_no_warning(
    call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    """501 is the documented answer for an operation not offered: logged like any refusal."""
    caplog.set_level(logging.DEBUG, logger="custom_components.est_pairing.est")
    for _ in range(3):
        assert_refusal(await call("POST", f"{EST}/fullcmc", body=b"MAA="), 501, "full CMC is not offered")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "EST refused a request with 501: full CMC is not offered" in caplog.text


async def test_approval_is_for_that_key_only(server: RunningServer, call: Call) -> None:
    fridge, impostor = appliance("fridge"), appliance("fridge")
    await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", "424242"))
    (pending,) = server.service.policy.pending_requests()
    await server.service.policy.approve(pending.request_id)
    replay = await call("POST", f"{EST}/simpleenroll", body=impostor.body, auth=("fridge", "424242"))
    assert replay.status == 202  # a new key waits for the owner again; never the approved key's cert
    assert len(server.service.ledger) == 0


async def test_rejected_appliance_gets_403(server: RunningServer, call: Call) -> None:
    fridge = appliance("fridge")
    await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", ""))
    (pending,) = server.service.policy.pending_requests()
    server.service.policy.reject(pending.request_id)
    answer = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", ""))
    assert_refusal(answer, 403, "rejected")


@pytest.mark.parametrize(
    ("builder", "status", "reason"),
    [
        (lambda k: build_csr(k, "fridge"), 403, "names 'fridge'"),
        (lambda k: build_csr(k, "oven", dns_names=["homeassistant.local"]), 403, "may only be named"),
        (lambda k: build_csr(k, "oven", dns_names=["login.microsoftonline.com"]), 403, "may only be named"),
        (lambda k: build_csr(k, "oven", dns_names=["oven.local"]), 200, ""),
        # A bare name is no name on the home network: its name there is granted instead.
        (lambda k: build_csr(k, "oven", dns_names=["oven", "OVEN.local."]), 200, ""),
    ],
)
async def test_names_in_the_request(
    call: Call,
    builder: Callable[[ec.EllipticCurvePrivateKey], x509.CertificateSigningRequest],
    status: int,
    reason: str,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = builder(key)
    body = wire.encode_base64(csr.public_bytes(serialization.Encoding.DER))
    answer = await call("POST", f"{EST}/simpleenroll", body=body, auth=("oven", "123456"))
    if status == 200:
        certificate = certificate_from(answer)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["oven.local"]
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    else:
        assert_refusal(answer, status, reason)


TWIN_REFUSAL = "stands for the same DNS name as an appliance the hub already knows"


async def test_an_id_standing_for_a_known_appliances_name_is_refused(
    server: RunningServer, call: Call
) -> None:
    """DNS names ignore case: ``Fridge`` and ``fridge`` would both be granted ``fridge.local``."""
    fridge = appliance("fridge")
    await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", ""))
    toaster = await call("POST", f"{EST}/simpleenroll", body=appliance("toaster").body, auth=("toaster", ""))
    assert toaster.status == 202
    pending = {p.appliance_id: p for p in server.service.policy.pending_requests()}
    await server.service.policy.approve(pending["fridge"].request_id)

    for twin, known in [("Fridge", "fridge"), ("Oven", "oven")]:  # approved, pre-registered
        twin_key = ec.generate_private_key(ec.SECP256R1())
        csr = build_csr(twin_key, twin, dns_names=[f"{twin}.local"])
        body = wire.encode_base64(csr.public_bytes(serialization.Encoding.DER))
        answer = await call("POST", f"{EST}/simpleenroll", body=body, auth=(twin, ""))
        assert_refusal(answer, 403, f"appliance id '{twin}' {TWIN_REFUSAL}")
        assert f"'{known}'" not in answer.text  # the known id is not told
    with pytest.raises(NameTaken, match=TWIN_REFUSAL):
        await server.service.policy.preregister("FRIDGE", "123456")
    # Twins of a waiting request wait beside it (a stranger's request must not lock the real
    # appliance out); the owner can approve one of them, not both.
    waiting = await call("POST", f"{EST}/simpleenroll", body=appliance("TOASTER").body, auth=("TOASTER", ""))
    assert waiting.status == 202
    pending = {p.appliance_id: p for p in server.service.policy.pending_requests()}
    assert sorted(pending) == ["TOASTER", "toaster"]
    await server.service.policy.approve(pending["toaster"].request_id)
    with pytest.raises(NameTaken, match=f"'TOASTER' {TWIN_REFUSAL}"):
        await server.service.policy.approve(pending["TOASTER"].request_id)
    assert len(server.service.ledger) == 0
    # The known appliance itself is unaffected.
    own = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", ""))
    assert certificate_from(own).public_key() == fridge.key.public_key()


async def test_probing_for_known_ids_costs_what_guessing_pins_costs(
    server: RunningServer, call: Call
) -> None:
    """Each probe for a twin of a known id counts like a wrong secret: the prober is locked out."""
    for _ in range(FREE_ATTEMPTS):
        answer = await call("POST", f"{EST}/simpleenroll", body=appliance("OVEN").body, auth=("OVEN", ""))
        assert_refusal(answer, 403, TWIN_REFUSAL)
    locked = await call("POST", f"{EST}/simpleenroll", body=appliance("OVEN").body, auth=("OVEN", ""))
    assert_refusal(locked, 429, "too many wrong secrets")
    assert server.service.policy.pending_requests() == []


@pytest.mark.parametrize(
    "appliance_id", ["oven.local", "OVEN.local", "oven.", "login.microsoftonline.com", "fridge.local"]
)
async def test_an_id_with_a_dot_is_refused(server: RunningServer, call: Call, appliance_id: str) -> None:
    """An id is one DNS label: ``oven.local`` would hold the pre-registered oven's name, and
    ``login.microsoftonline.com`` a public site's, once the owner approves it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, appliance_id, dns_names=[appliance_id])
    body = wire.encode_base64(csr.public_bytes(serialization.Encoding.DER))
    for operation in ("simpleenroll", "serverkeygen"):
        answer = await call("POST", f"{EST}/{operation}", body=body, auth=(appliance_id, "123456"))
        assert_refusal(answer, 400, "with no '.' (the appliance is named <id>.local)")
    assert server.service.policy.pending_requests() == []
    assert len(server.service.ledger) == 0


async def test_an_id_with_a_dot_from_an_older_release_keeps_working_without_a_dns_name(
    server: RunningServer, call: Call
) -> None:
    """Registrations restored from storage keep their ids; their certificates carry no DNS name."""
    state = server.service.policy.export()
    state["registrations"].append(
        {
            "appliance_id": "oven.kitchen",
            "identity": "id:oven.kitchen",
            "kind": "pin",
            "secret_digest": digest_secret("654321"),
            "keys": [],
            "details": {"name": None, "model": None, "manufacturer": None, "serial_number": None},
            "approved_at": 0.0,
            "preregistered": True,
        }
    )
    server.service.policy.restore(state)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, "oven.kitchen", dns_names=["oven.kitchen.local"])
    body = wire.encode_base64(csr.public_bytes(serialization.Encoding.DER))
    answer = await call("POST", f"{EST}/simpleenroll", body=body, auth=("oven.kitchen", "654321"))
    certificate = certificate_from(answer)
    assert certificate.subject.rfc4514_string() == "CN=oven.kitchen"
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize("appliance_id", ["localhost", "localhost.local", "LocalHost.Local", "localhost."])
async def test_an_id_naming_the_server_with_or_without_local_is_refused(
    call: Call, appliance_id: str
) -> None:
    """The server answers to ``localhost``: ``localhost.local`` is a name of the server too."""
    twin = appliance(appliance_id)
    answer = await call("POST", f"{EST}/simpleenroll", body=twin.body, auth=(appliance_id, ""))
    assert_refusal(answer, 403, "a name this server answers to")


async def test_weak_key_is_refused(call: Call) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oven")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(weak, hashes.SHA256())
    body = wire.encode_base64(csr.public_bytes(serialization.Encoding.DER))
    answer = await call("POST", f"{EST}/simpleenroll", body=body, auth=("oven", "123456"))
    assert_refusal(answer, 400, "RSA")


async def test_a_request_signed_with_sha1_is_400_naming_the_algorithm(
    server: RunningServer, call: Call
) -> None:
    body = wire.encode_base64(forge.openssl_signed(appliance().key, "sha1"))
    answer = await call("POST", f"{EST}/simpleenroll", body=body, auth=("oven", "123456"))
    assert_refusal(answer, 400, "certificate request is signed with SHA-1, which is not accepted")
    assert len(server.service.ledger) == 0


# --- re-enrollment ----------------------------------------------------------------------------------


async def enrolled(
    call: Call, appliance_id: str = "oven"
) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    oven = appliance(appliance_id)
    answer = await call("POST", f"{EST}/simpleenroll", body=oven.body, auth=(appliance_id, "123456"))
    return certificate_from(answer), oven.key


def renewal_body(key: CertificateIssuerPrivateKeyTypes, current: x509.Certificate) -> bytes:
    return wire.encode_base64(renewal_csr(key, current).public_bytes(serialization.Encoding.DER))


async def test_reenroll_same_key_and_rekey(server: RunningServer, call: Call) -> None:
    certificate, key = await enrolled(call)
    same = await call(
        "POST", f"{EST}/simplereenroll", body=renewal_body(key, certificate), tls=(certificate, key)
    )
    renewed = certificate_from(same)
    assert renewed.subject == certificate.subject
    assert renewed.serial_number != certificate.serial_number
    await server.service.policy.preregister("stove", "123456")
    stove, stove_key = await enrolled(call, "stove")
    new_key = ec.generate_private_key(ec.SECP384R1())
    rekeyed = certificate_from(
        await call(
            "POST",
            f"{EST}/appliance/simplereenroll",
            body=renewal_body(new_key, stove),
            tls=(stove, stove_key),
        )
    )
    assert rekeyed.public_key() == new_key.public_key()
    assert [r.appliance_id for r in server.service.ledger.for_appliance("oven")] == ["oven"] * 2


async def test_a_certificate_renews_once_then_waits(server: RunningServer, call: Call) -> None:
    """Renewing the same certificate again, or a renewed one at once, grows nothing: 403 and 429."""
    certificate, key = await enrolled(call)
    renewed_key = ec.generate_private_key(ec.SECP256R1())
    renewal = renewal_body(renewed_key, certificate)
    renewed = certificate_from(
        await call("POST", f"{EST}/simplereenroll", body=renewal, tls=(certificate, key))
    )
    again = await call("POST", f"{EST}/simplereenroll", body=renewal, tls=(certificate, key))
    assert certificate_from(again) == renewed  # the same renewal (its answer was lost): the same answer
    another = renewal_body(ec.generate_private_key(ec.SECP256R1()), certificate)
    assert_refusal(
        await call("POST", f"{EST}/simplereenroll", body=another, tls=(certificate, key)),
        403,
        "renewed already: renew with the newer certificate",
    )
    early = await call(
        "POST",
        f"{EST}/simplereenroll",
        body=renewal_body(ec.generate_private_key(ec.SECP256R1()), renewed),
        tls=(renewed, renewed_key),
    )
    assert_refusal(early, 429, "came from a renewal and renews from")
    assert int(early.headers["Retry-After"]) > 80 * 86400  # a quarter of a year, less 5 minutes
    assert len(server.service.ledger) == 2


async def test_reenroll_refusals(server: RunningServer, call: Call) -> None:
    certificate, key = await enrolled(call)
    body = renewal_body(key, certificate)
    assert_refusal(await call("POST", f"{EST}/simplereenroll", body=body), 401, "client certificate")
    other = wire.encode_base64(build_csr(key, "fridge").public_bytes(serialization.Encoding.DER))
    assert_refusal(
        await call("POST", f"{EST}/simplereenroll", body=other, tls=(certificate, key)),
        403,
        "subject differs",
    )
    with_san = build_csr(key, "oven", dns_names=["oven.local"])
    assert_refusal(
        await call(
            "POST",
            f"{EST}/simplereenroll",
            body=wire.encode_base64(with_san.public_bytes(serialization.Encoding.DER)),
            tls=(certificate, key),
        ),
        403,
        "alternative names differ",
    )
    assert_refusal(
        await call("POST", f"{EST}/simpleenroll", body=body, tls=(certificate, key)),
        403,
        "simplereenroll",
    )
    await server.service.registrar.revoke_appliance("oven")
    assert_refusal(
        await call("POST", f"{EST}/simplereenroll", body=body, tls=(certificate, key)),
        403,
        "revoked",
    )
    crl = x509.load_der_x509_crl((await call("GET", "/crl")).body)
    assert crl.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None


async def test_a_household_certificate_on_simpleenroll_is_told_what_is_wrong_with_it(
    server: RunningServer, call: Call
) -> None:
    """Only a valid certificate is sent to simplereenroll: an unknown, expired or revoked one cannot renew
    either, and the appliance pairs again without it."""
    certificate, key = await enrolled(call)
    now = datetime.now(UTC)
    unknown = forge.issued_by(server.service.ca, key.public_key(), not_before=now - timedelta(minutes=5))
    expired = forge.issued_by(
        server.service.ca,
        key.public_key(),
        not_before=now - timedelta(days=30),
        lifetime=timedelta(days=29),
        serial_number=certificate.serial_number,
    )
    fresh = appliance().body
    for presented, reason in [(unknown, "not in this CA's ledger"), (expired, "has expired")]:
        answer = await call("POST", f"{EST}/simpleenroll", body=fresh, tls=(presented, key))
        assert_refusal(answer, 403, reason)
        assert "connect without it" in answer.text
        assert "simplereenroll" not in answer.text

    await server.service.registrar.revoke_appliance("oven")
    for operation in ("simpleenroll", "serverkeygen"):
        answer = await call("POST", f"{EST}/{operation}", body=fresh, tls=(certificate, key))
        assert_refusal(answer, 403, "the presented certificate has been revoked")
        assert "connect without it" in answer.text
        assert "simplereenroll" not in answer.text
    # The reference appliance reads it as a revocation (it discards its key and certificate).
    client_ssl = client_ssl_context(server.service.ca.certificate, certificate=certificate, private_key=key)
    async with server.client() as client:
        with pytest.raises(CertificateRevoked):
            await client.simpleenroll(appliance().csr, client_ssl=client_ssl)
    assert len(server.service.ledger) == 1


@pytest.mark.parametrize("authorization", ["Bearer x", "Basic %%%", wire.basic_authorization("oven", "0")])
async def test_a_client_certificate_needs_no_authorization_header_and_ignores_one(
    server: RunningServer, call: Call, authorization: str
) -> None:
    """§3.2.3: HTTP authentication is optional beside TLS client authentication."""
    certificate, key = await enrolled(call)
    headers = {"Authorization": authorization}
    renewed = await call(
        "POST",
        f"{EST}/simplereenroll",
        body=renewal_body(key, certificate),
        tls=(certificate, key),
        headers=headers,
    )
    assert certificate_from(renewed).subject == certificate.subject
    again = await call(
        "POST", f"{EST}/simpleenroll", body=appliance().body, tls=(certificate, key), headers=headers
    )
    assert_refusal(again, 403, "renew with simplereenroll")  # judged by its certificate, not a 401


@pytest.mark.parametrize(
    ("repeated", "reason"),
    [
        ("Authorization: Basic b3ZlbjoxMjM0NTY=\r\nAuthorization: Basic Zm9vOmJhcg==", "Authorization"),
        ("Content-Type: text/plain\r\nContent-Type: application/pkcs10", "Content-Type"),
        ("Content-Type: application/pkcs10\r\nContent-Type: text/plain", "Content-Type"),
    ],
)
async def test_a_repeated_authorization_or_content_type_header_is_400(
    server: RunningServer, caplog: pytest.LogCaptureFixture, repeated: str, reason: str
) -> None:
    """Neither copy wins: which one a client meant is a guess, and proxies may pick the other one."""
    body = appliance().body
    head = (
        f"POST {EST}/simpleenroll HTTP/1.1\r\nHost: 127.0.0.1\r\n{repeated}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    context = rawhttp.tls_context(server.service.ca.certificate_pem)
    answer = await rawhttp.exchange(server.service.port, head.encode() + body, tls=context)
    assert answer is not None
    assert answer.status == 400, answer.text
    assert answer.is_one_line_refusal(), answer.body
    # The server's reason, or (Content-Type, on newer aiohttp) its HTTP parser's: both name the header.
    assert re.search(rf"more than one {reason} header|Duplicate '{reason}' header", answer.text), answer.text
    assert len(server.service.ledger) == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


# --- server-side key generation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_key", "expected"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), ec.EllipticCurvePrivateKey),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), rsa.RSAPrivateKey),
    ],
)
async def test_serverkeygen(
    server: RunningServer,
    call: Call,
    request_key: Callable[[], CertificateIssuerPrivateKeyTypes],
    expected: type,
) -> None:
    oven = Appliance("oven", request_key())
    answer = await call("POST", f"{EST}/serverkeygen", body=oven.body, auth=("oven", "123456"))
    assert answer.status == 200, answer.text
    content_type = answer.headers["Content-Type"]
    assert "Content-Transfer-Encoding" not in answer.headers
    assert int(answer.headers["Content-Length"]) == len(answer.body)
    parts = dict(wire.decode_multipart(answer.body, content_type))
    key = serialization.load_der_private_key(parts["application/pkcs8"], password=None)
    assert isinstance(key, expected)
    (certificate,) = wire.decode_certs_only(parts["application/pkcs7-mime"])
    assert certificate.public_key() == key.public_key()
    assert certificate.public_key() != oven.key.public_key()


async def test_serverkeygen_needs_a_secret_a_copy_of_the_request_lacks(
    server: RunningServer, call: Call
) -> None:
    """A request's signature proves possession once: replaying an approved one must not buy a key."""
    fridge = appliance("fridge")
    waiting = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", ""))
    assert waiting.status == 202
    (pending,) = server.service.policy.pending_requests()
    await server.service.policy.approve(pending.request_id)  # the owner compared the fingerprints

    replay = await call("POST", f"{EST}/serverkeygen", body=fridge.body, auth=("fridge", ""))
    assert_refusal(replay, 403, "must enroll its own key (simpleenroll)")
    fresh = await call("POST", f"{EST}/serverkeygen", body=appliance("toaster").body, auth=("toaster", ""))
    assert_refusal(fresh, 403, "needs a PIN, a pre-registration secret or a factory certificate")
    assert server.service.policy.pending_requests() == []  # refused before asking the owner
    assert len(server.service.ledger) == 0
    # The appliance itself, holding its key, still gets the certificate the owner approved.
    own = await call("POST", f"{EST}/simpleenroll", body=fridge.body, auth=("fridge", ""))
    assert certificate_from(own).public_key() == fridge.key.public_key()


async def test_server_keeps_answering_concurrent_requests(call: Call) -> None:
    answers = await asyncio.gather(*(call("GET", f"{EST}/cacerts") for _ in range(20)))
    assert {a.status for a in answers} == {200}


# --- requests the HTTP parser refuses --------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        pytest.param(b"G\x00T / HTTP/1.1\r\n\r\n", "Invalid method", id="NUL in the method"),
        pytest.param(b"GET / HTTP/9.9\r\n\r\n", "malformed HTTP request", id="HTTP/9.9"),
        pytest.param(b"GET /\xff HTTP/1.1\r\n\r\n", "url", id="non-ASCII path"),
        pytest.param(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", "8190 bytes", id="9 KB header"),
        pytest.param(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "header value", id="NUL in a header"),
        pytest.param(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "Content-Length",
            id="length and chunked",
        ),
        pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "PRI", id="HTTP/2 preface"),
        pytest.param(b"G\x00T / HTTP/1.1\r\nAccept: text/html\r\n\r\n", "Invalid method", id="asks for HTML"),
    ],
)
@on_each_loop(oven_server)
async def test_unparseable_requests_get_one_line_and_no_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture, request_bytes: bytes, reason: str
) -> None:
    context = rawhttp.tls_context(server.service.ca.certificate_pem)
    answer = await rawhttp.exchange(server.service.port, request_bytes, tls=context)
    assert answer is not None
    assert answer.status == 400, answer.text
    assert answer.is_one_line_refusal(), answer.body
    assert reason in answer.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


@on_each_loop(oven_server)
async def test_a_peer_leaving_mid_request_leaves_nothing_behind(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No error log, and no timer outlives the connection (the harness fails on lingering timers)."""
    context = rawhttp.tls_context(server.service.ca.certificate_pem)
    headers = {"Content-Type": wire.PKCS10, "Content-Length": "1000"}
    listener = server.service._listener
    assert listener is not None
    guard = listener.guard
    async with rawhttp.connect(server.service.port, tls=context) as connection:
        await connection.send(rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers) + b"MII")
        await eventually(
            lambda: any(c.busy for c in guard._open), "the handler waits for the rest of the body"
        )
        connection.writer.transport.abort()
    await eventually(lambda: len(guard) == 0, "the server let go of the connection")
    answer = await rawhttp.exchange(
        server.service.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=context
    )
    assert answer is not None and answer.status == 200
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-x\r\n\x00\x01",
            404,
            id="CONNECT, then other bytes",
        ),
        pytest.param(
            rawhttp.http_request(
                "GET", f"{EST}/cacerts", headers={"Connection": "Upgrade", "Upgrade": "websocket"}
            )
            + b"G\x00T / HTTP/1.1\r\n\r\n",
            200,
            id="Upgrade header, then garbage",
        ),
    ],
)
@on_each_loop(oven_server)
async def test_bytes_after_an_upgrade_request_are_answered_not_crashed(
    server: RunningServer, caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: int
) -> None:
    """aiohttp parses what follows an upgrade request only after the handler; EST upgrades nothing."""
    context = rawhttp.tls_context(server.service.ca.certificate_pem)
    answer = await rawhttp.exchange(server.service.port, request_bytes, tls=context)
    assert answer is not None and answer.status == status
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


async def test_an_unexpected_failure_is_a_500_with_one_line_and_nothing_issued(
    server: RunningServer, call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    with patch.object(server.service.registrar, "enroll", side_effect=RuntimeError("bug")):
        answer = await call("POST", f"{EST}/simpleenroll", body=appliance().body, auth=("oven", "123456"))
    assert_refusal(answer, 500, "internal error; nothing was issued")
    assert "bug" not in answer.text  # no internals leak to the peer
    assert "EST request POST /.well-known/est/simpleenroll failed" in caplog.text
    assert len(server.service.ledger) == 0
    assert (await call("GET", f"{EST}/cacerts")).status == 200


# --- aiohttp's request handler ----------------------------------------------------------------------


def test_the_request_handler_hooks_fit_this_aiohttp() -> None:
    """The one place the listener reaches past aiohttp's documented API still fits it.

    Fails on an aiohttp release that renamed or re-shaped ``RequestHandler.handle_error`` or
    ``finish_response``, or its constructor: the listener then serves with aiohttp's own handler
    (multi-line refusals of unparseable requests) until ``_EstRequestHandler`` is brought up to date.
    """
    assert server_module.request_handler_hooks_fit(), aiohttp.__version__


async def test_where_the_hooks_do_not_fit_the_listener_serves_with_aiohttps_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server_module, "request_handler_hooks_fit", lambda: False)
    async with oven_server(tmp_path) as server:
        assert f"aiohttp {aiohttp.__version__} changed its request handler" in caplog.text
        context = rawhttp.tls_context(server.service.ca.certificate_pem)
        refused = await rawhttp.exchange(server.service.port, b"G\x00T / HTTP/1.1\r\n\r\n", tls=context)
        assert refused is not None and refused.status == 400  # aiohttp's own words, but a 400
        oven = appliance()
        answer = await rawhttp.exchange(
            server.service.port,
            rawhttp.http_request(
                "POST",
                f"{EST}/simpleenroll",
                headers={"Content-Type": wire.PKCS10, "Authorization": "Basic b3ZlbjoxMjM0NTY="},
                body=oven.body,
            ),
            tls=context,
        )
        assert answer is not None
        assert answer.status == 200, answer.text
