"""Property-based tests: any bytes as body, header, path, label or credentials get a clear refusal.

First the parsers on their own (many examples, no sockets), then the real listener over TLS: every
answer is a 2xx or a 4xx with a one-line text/plain reason, never a 5xx; nothing is issued; and the
server still answers afterwards.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

from cryptography import x509
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.csr import ApplianceDetails, inspect_request
from custom_components.est_pairing.est.errors import EstError
from custom_components.est_pairing.est.issuance import IssuancePolicy
from custom_components.est_pairing.est.limits import MAX_SECRET_LENGTH
from custom_components.est_pairing.est.policy import Claim, CredentialKind

from . import forge, rawhttp
from .conftest import RunningServer

pytestmark = pytest.mark.slow  # hypothesis: hundreds of generated requests over real TLS

EST = "/.well-known/est"
KEY = forge.new_key()
VALID_CSR = forge.build(
    KEY,
    "oven",
    attributes=x509.Name([x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "Acme")]),
    extensions=[x509.SubjectAlternativeName([x509.DNSName("oven.local")])],
)
REQUEST_INFO = forge.request_info(x509.load_der_x509_csr(VALID_CSR))
OVEN = wire.basic_authorization("oven", "123456")

PARSERS = settings(max_examples=400, deadline=None)
LISTENER = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def mutated_request_info(draw: st.DrawFn) -> bytes:
    """The signed part of a valid CSR with a few bytes changed, inserted or deleted."""
    info = bytearray(REQUEST_INFO)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(info) - 1))
        match draw(st.sampled_from(["set", "insert", "delete"])):
            case "set":
                info[position] = draw(st.integers(0, 255))
            case "insert":
                info.insert(position, draw(st.integers(0, 255)))
            case _:
                del info[position]
    return bytes(info)


def bodies() -> st.SearchStrategy[bytes]:
    """Request bodies: raw bytes, base64 of bytes, PEM around bytes, and validly signed mutations."""
    return st.one_of(
        st.binary(max_size=2048),
        st.binary(max_size=2048).map(base64.b64encode),
        st.binary(max_size=512).map(
            lambda b: b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.b64encode(b) + b"\n-----END"
        ),
        mutated_request_info().map(lambda info: forge.body(forge.sign_info(info, KEY))),
    )


# --- the parsers ----------------------------------------------------------------------------------------


@PARSERS
@given(body=bodies())
def test_any_body_parses_or_is_malformed(body: bytes) -> None:
    try:
        request = inspect_request(wire.load_csr(body))
        grant = IssuancePolicy(reserved_names=["homeassistant.local"]).grant(request, "oven")
    except EstError:
        return  # refused with a reason (a 4xx): anything else escaping is a 500
    assert grant.name.common_name == "oven"  # a body that passes is granted only the appliance's name


@PARSERS
@given(info=mutated_request_info())
def test_validly_signed_mutations_are_refused_or_granted_never_crash(info: bytes) -> None:
    """The signature verifies, so every later parsing step meets the mutation."""
    try:
        request = inspect_request(wire.load_csr(forge.sign_info(info, KEY)))
        grant = IssuancePolicy().grant(request, "oven")
    except EstError:
        return
    assert grant.name.common_name == "oven"  # whatever the request said, only its own name


# Characters that reorder or hide text where a name is shown (and the C0/C1 controls).
INVISIBLE = [chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0x200B, 0x2010)]]
INVISIBLE += ["\ufeff", "\u00ad", "\u061c", "\U000e0041", "\x85", "\n", "\x1b"]


@PARSERS
@given(
    words=st.lists(st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), max_size=8)),
    hidden=st.lists(st.sampled_from(INVISIBLE), min_size=1),
)
def test_what_a_request_says_about_itself_holds_nothing_invisible(
    words: list[str], hidden: list[str]
) -> None:
    """Bidi overrides, isolates, marks and zero-width characters never reach a dialog or device name."""
    text = "".join(w + h for w, h in zip(words + [""] * len(hidden), hidden, strict=False))[:60] or "x"
    subject = [
        (x509.ObjectIdentifier("2.5.4.41"), text),
        (x509.NameOID.ORGANIZATIONAL_UNIT_NAME, text),
        (x509.NameOID.ORGANIZATION_NAME, text),
        (x509.NameOID.SERIAL_NUMBER, "SN" + text),
    ]
    details = inspect_request(wire.load_csr(forge.with_text_attributes(KEY, "oven", subject))).details
    for shown in (details.name, details.model, details.manufacturer, details.serial_number):
        assert shown is None or not set(shown) & set(INVISIBLE), repr(shown)


def test_the_reversed_lock_name_reads_as_it_is() -> None:
    subject = x509.Name(
        [x509.NameAttribute(x509.ObjectIdentifier("2.5.4.41"), "Front door lock\u202e\u200bkcol")]
    )
    details = inspect_request(wire.load_csr(forge.build(KEY, "oven", attributes=subject))).details
    assert details.name == "Front door lockkcol"
    assert ApplianceDetails(name="\u2066Oven\u2069", model="\u200b").name == "Oven"  # typed, or stored
    assert ApplianceDetails(model="\u200b\ufeff").model is None


@PARSERS
@given(
    header=st.one_of(
        st.text(),
        st.binary().map(lambda b: "Basic " + base64.b64encode(b).decode()),
    )
)
def test_any_authorization_header_parses_or_is_refused(header: str) -> None:
    try:
        credentials = wire.parse_basic_authorization(header)
        claim = Claim.from_basic(credentials) if credentials is not None else None
    except EstError:
        return  # refused with a reason (a 401 or 400): anything else escaping is a 500
    assert credentials is not None and claim is not None  # a header was given: never read as none
    assert claim.appliance_id == credentials.username


@PARSERS
@given(
    appliance_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", fullmatch=True),
    secret=st.text(max_size=MAX_SECRET_LENGTH),
)
def test_basic_credentials_read_back_as_sent(appliance_id: str, secret: str) -> None:
    """RFC 7617: the user id ends at the first ':'; the password may hold any character, ':' too."""
    token = base64.b64encode(f"{appliance_id}:{secret}".encode()).decode()
    credentials = wire.parse_basic_authorization(f"Basic {token}")
    assert credentials == BasicCredentials(appliance_id, secret)
    claim = Claim.from_basic(credentials)
    assert (claim.appliance_id, claim.secret) == (appliance_id, secret)
    assert claim.kind is (CredentialKind.PIN if secret else CredentialKind.FINGERPRINT)


@PARSERS
@given(header=st.text())
def test_any_content_type_has_a_media_type(header: str) -> None:
    assert wire.media_type(header) == wire.media_type(header).strip().lower()


# --- the listener ---------------------------------------------------------------------------------------


async def ask(server: RunningServer, request: bytes) -> rawhttp.RawResponse:
    """Send raw bytes on a new TLS connection; the server must answer with a 2xx or a clear 4xx."""
    context = rawhttp.tls_context(server.service.ca.certificate_pem)
    head = request.startswith(b"HEAD ")  # the answer has headers only
    async with rawhttp.connect(server.service.port, tls=context) as connection:
        await connection.send(request)
        answer = await connection.response(to_head=head)
    assert answer is not None, "closed without an answer"
    assert answer.status < 500, answer.text
    if answer.status >= 400 and head:
        assert answer.headers["content-type"].startswith("text/plain")
    elif answer.status >= 400:
        assert answer.is_one_line_refusal(), answer.body
    return answer


async def assert_unharmed(server: RunningServer, issued_before: int) -> None:
    """Nothing was issued, and the server still serves a plain request."""
    assert len(server.service.ledger) == issued_before
    answer = await ask(server, rawhttp.http_request("GET", f"{EST}/cacerts"))
    assert answer.status == 200


async def assert_issued_to_oven(
    server: RunningServer, answer: rawhttp.RawResponse, before: set[int], body: bytes
) -> None:
    """One certificate, recorded, naming only oven, with no CA powers, for the requesting key.

    Any body that is a valid request for oven gets one: the mutations signed with KEY, and bytes
    hypothesis replays from its database (signed with the KEY of the run that found them). The same
    request again gets the same certificate back, which adds no record.
    """
    if operation_is_keygen := answer.headers["content-type"].startswith(wire.MULTIPART_MIXED):
        parts = dict(wire.decode_multipart(answer.body, answer.headers["content-type"]))
        (certificate,) = wire.decode_certs_only(parts[wire.CERTS_ONLY.split(";")[0]])
    else:
        (certificate,) = wire.decode_certs_only(answer.body)
    assert certificate.subject.rfc4514_string() == "CN=oven"
    assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert operation_is_keygen or certificate.public_key() == wire.load_csr(body).public_key()
    assert server.service.ledger.get(certificate.serial_number) is not None
    oven = server.service.ledger.for_appliance("oven")
    assert len(oven) == len(before) + (certificate.serial_number not in before)


@LISTENER
@given(body=bodies(), operation=st.sampled_from(["simpleenroll", "simplereenroll", "serverkeygen"]))
async def test_any_body(server: RunningServer, body: bytes, operation: str) -> None:
    issued = len(server.service.ledger)
    before = {record.serial_number for record in server.service.ledger.for_appliance("oven")}
    headers = {"Content-Type": wire.PKCS10, "Authorization": OVEN}
    answer = await ask(server, rawhttp.http_request("POST", f"{EST}/{operation}", headers=headers, body=body))
    if answer.status == 200:  # a mutation can leave a valid request for oven: the proper answer
        assert operation != "simplereenroll"  # which needs a client certificate
        await assert_issued_to_oven(server, answer, before, body)
        return
    assert 400 <= answer.status < 500
    await assert_unharmed(server, issued)


@LISTENER
@given(
    name=st.sampled_from([b"Content-Type", b"Authorization", b"Content-Length", b"Transfer-Encoding", b"X"]),
    value=st.binary(max_size=300),
)
async def test_any_header_value(server: RunningServer, name: bytes, value: bytes) -> None:
    headers = b"Content-Type: application/pkcs10\r\nAuthorization: " + OVEN.encode() + b"\r\n"
    request = (
        f"POST {EST}/simpleenroll HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + headers
        + name
        + b": "
        + value
        + b"\r\nContent-Length: 4\r\n\r\nMAA="
    )
    before = len(server.service.ledger)
    answer = await ask(server, request)
    assert 400 <= answer.status < 500
    await assert_unharmed(server, before)


@LISTENER
@given(
    method=st.one_of(
        st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"HEAD", b"CONNECT", b"TRACE"]),
        st.binary(min_size=1, max_size=12),
    ),
    path=st.binary(max_size=200),
)
async def test_any_method_and_path(server: RunningServer, method: bytes, path: bytes) -> None:
    before = len(server.service.ledger)
    request = method + b" " + EST.encode() + b"/" + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    answer = await ask(server, request)
    if answer.status < 400:  # only the two unauthenticated operations answer a bare request
        assert answer.status == 200
        assert answer.headers["content-type"] in {wire.PKCS7_MIME, wire.CSRATTRS}
    await assert_unharmed(server, before)


@LISTENER
@given(label=st.text(min_size=1, max_size=80))
async def test_any_label(server: RunningServer, label: str) -> None:
    before = len(server.service.ledger)
    answer = await ask(server, rawhttp.http_request("GET", f"{EST}/{quote(label, safe='')}/cacerts"))
    assert answer.status == (200 if label == "appliance" else 404), label
    await assert_unharmed(server, before)


@LISTENER
@given(credentials=st.binary(max_size=200))
async def test_any_credentials(server: RunningServer, credentials: bytes) -> None:
    """A valid CSR, and whatever bytes as the Basic user:password."""
    headers = {
        "Content-Type": wire.PKCS10,
        "Authorization": "Basic " + base64.b64encode(credentials).decode(),
    }
    before = len(server.service.ledger)
    csr = forge.body(forge.build(forge.new_key(), "oven"))
    answer = await ask(server, rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers, body=csr))
    if credentials == b"oven:123456":
        assert answer.status == 200
        return
    assert answer.status in {202, 400, 401, 403, 429}, answer.text
    await assert_unharmed(server, before)
