"""The abuse table: each case is a name, the answer it must get, and the attack.

``expect`` is the status, or CLOSED when the server must drop the connection without an HTTP
answer (TLS refused). ``reason`` must appear in the one-line refusal. An attack returns the answer
to its abusive request; set-up steps it takes the honest way (Target.enrolled) are the only
certificates it may cause, and it may assert more about what it saw.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import gzip
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.limits import MAX_BODY_BYTES
from est_tools.appliance.client import renewal_csr

from .. import forge, rawhttp
from .target import EST, Target

CLOSED = None  # the connection is dropped without an HTTP answer
type Answer = rawhttp.RawResponse | None
type Attack = Callable[[Target], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class AbuseCase:
    """One named abuse and what it must get."""

    name: str
    expect: int | None
    reason: str
    attack: Attack
    needs_owner_approval: bool = False  # meaningless when the server approves everything itself

    @property
    def expected(self) -> str:
        return "closed" if self.expect is CLOSED else str(self.expect)


CASES: list[AbuseCase] = []


def case(
    name: str, expect: int | None, reason: str = "", *, needs_owner_approval: bool = False
) -> Callable[[Attack], Attack]:
    """Add the decorated attack to the table."""

    def register(attack: Attack) -> Attack:
        CASES.append(AbuseCase(name, expect, reason, attack, needs_owner_approval))
        return attack

    return register


def oven_csr(
    target: Target,
    *,
    attributes: x509.Name = forge.NO_ATTRIBUTES,
    extensions: Iterable[x509.ExtensionType] = (),
) -> bytes:
    """A base64 body: a CSR for the target's appliance, with more subject attributes or extensions."""
    key = forge.new_key()
    return forge.body(forge.build(key, target.user, attributes=attributes, extensions=extensions))


def key_usage(**flags: bool) -> x509.KeyUsage:
    names: tuple[str, ...] = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
    )
    names += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**(dict.fromkeys(names, False) | flags))


# --- undecodable bodies -----------------------------------------------------------------------------


@case("bad base64", 400, "not valid base64")
async def _bad_base64(t: Target) -> Answer:
    return await t.enroll(b"MIIB!!this*is*not*base64==\r\n")


@case("empty body", 400, "empty")
async def _empty(t: Target) -> Answer:
    return await t.enroll(b"")


@case("truncated DER", 400, "not a DER PKCS#10")
async def _truncated(t: Target) -> Answer:
    der = forge.build(forge.new_key(), t.user)
    return await t.enroll(der[: len(der) // 2])


@case("garbage DER", 400, "not a DER PKCS#10")
async def _garbage(t: Target) -> Answer:
    return await t.enroll(b"\x30\x82\x01\x00" + os.urandom(256))


@case("a certificate instead of a CSR", 400, "not a DER PKCS#10")
async def _certificate(t: Target) -> Answer:
    return await t.enroll(forge.body(t.ca.public_bytes(serialization.Encoding.DER)))


@case("CSR with a bad signature", 400, "signature does not verify")
async def _bad_signature(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.with_bad_signature(forge.build(forge.new_key(), t.user))))


@case("validly signed CSR with an undecodable subject", 400, "subject cannot be decoded")
async def _undecodable_subject(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.with_common_name_der(forge.new_key(), b"\x0c\x02\xff\xfe")))


# --- requests for more than an appliance may have ---------------------------------------------------


@case("CSR asking for CA:TRUE", 403, "CA:TRUE")
async def _ca_true(t: Target) -> Answer:
    return await t.enroll(oven_csr(t, extensions=[x509.BasicConstraints(ca=True, path_length=None)]))


@case("CSR asking for keyCertSign", 403, "keyCertSign")
async def _key_cert_sign(t: Target) -> Answer:
    return await t.enroll(oven_csr(t, extensions=[key_usage(key_cert_sign=True)]))


@case("serverkeygen asking for CA:TRUE", 403, "CA:TRUE")
async def _serverkeygen_ca(t: Target) -> Answer:
    csr = oven_csr(t, extensions=[x509.BasicConstraints(ca=True, path_length=None)])
    return await t.enroll(csr, operation="serverkeygen")


@case("CSR naming another appliance", 403, "but the credential is for")
async def _other_common_name(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.build(forge.new_key(), "fridge")))


@case("CSR asking for another appliance's DNS name", 403, "may only be named")
async def _other_dns_name(t: Target) -> Answer:
    return await t.enroll(
        oven_csr(t, extensions=[x509.SubjectAlternativeName([x509.DNSName("fridge.local")])])
    )


@case("CSR asking for the server's host name", 403, "may only be named")
async def _host_name(t: Target) -> Answer:
    names = x509.SubjectAlternativeName([x509.DNSName(t.reserved_name)])
    return await t.enroll(oven_csr(t, extensions=[names]))


@case("appliance id that is the server's host name", 403, "a name this server answers to")
async def _host_name_as_id(t: Target) -> Answer:
    body = forge.body(forge.build(forge.new_key(), t.reserved_name))
    return await t.enroll(body, user=t.reserved_name, pin="123456")


@case("appliance id that is a public host name", 400, "with no '.'")
async def _public_name_as_id(t: Target) -> Answer:
    names = x509.SubjectAlternativeName([x509.DNSName("login.microsoftonline.com")])
    csr = forge.build(forge.new_key(), "login.microsoftonline.com", extensions=[names])
    return await t.enroll(forge.body(csr), user="login.microsoftonline.com", pin="123456")


@case("appliance id differing only in case from a known one", 403, "stands for the same DNS name")
async def _case_twin(t: Target) -> Answer:
    twin = t.user.upper()
    return await t.enroll(forge.body(forge.build(forge.new_key(), twin)), user=twin, pin="123456")


@case("CSR asking for an IP address", 403, "IP addresses")
async def _ip_address(t: Target) -> Answer:
    names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("192.168.1.2"))])
    return await t.enroll(oven_csr(t, extensions=[names]))


@case("CSR with 1,000 alternative names", 400, "1000 alternative names")
async def _thousand_names(t: Target) -> Answer:
    names = x509.SubjectAlternativeName([x509.DNSName(f"n{i}") for i in range(1000)])
    return await t.enroll(forge.build(forge.new_key(), t.user, extensions=[names]))  # raw DER: 7 KB


@case("CSR with a 100 KB subject", 413, "over")
async def _huge_subject(t: Target) -> Answer:
    padding = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 60)] * 1700)
    return await t.enroll(oven_csr(t, attributes=padding))


@case("CSR with an 8 KB subject (under the body limit)", 400, "subject is over")
async def _large_subject(t: Target) -> Answer:
    padding = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 60)] * 130)
    return await t.enroll(forge.build(forge.new_key(), t.user, attributes=padding))


@case("RSA-1024 key", 400, "RSA keys must be")
async def _rsa_1024(t: Target) -> Answer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return await t.enroll(forge.body(forge.build(key, t.user)))


@case("RSA key with a 2,047-bit public exponent (slow to check)", 400, "exponent is over")
async def _rsa_huge_exponent(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.build(forge.rsa_key_with_exponent(2047), t.user)))


@case("RSA key with a 2,047-bit exponent under an ECDSA signature", 400, "signature does not verify")
async def _rsa_huge_exponent_ecdsa_signature(t: Target) -> Answer:
    costly = x509.load_der_x509_csr(forge.build(forge.rsa_key_with_exponent(2047), t.user))
    return await t.enroll(forge.body(forge.sign_info(forge.request_info(costly), forge.new_key())))


@case("DSA key with a 10,000-bit modulus (slow to check)", 400, "key type DSAPublicKey is not supported")
async def _dsa_huge_modulus(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.dsa_signed(10_000, t.user)))


@case("unknown curve", 400, "unsupported key or signature algorithm")
async def _unknown_curve(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.with_curve(forge.new_key(), "1.2.3.4.5")))


@case("curve the policy refuses (secp256k1)", 400, "use P-256 or P-384")
async def _secp256k1(t: Target) -> Answer:
    return await t.enroll(forge.body(forge.build(ec.generate_private_key(ec.SECP256K1()), t.user)))


def request_case(name: str, expect: int | None, reason: str, request: bytes, *, tls: bool = True) -> None:
    """A case that is nothing but these bytes on a new connection."""

    async def attack(t: Target) -> Answer:
        return await t.exchange(request, tls=tls)

    case(name, expect, reason)(attack)


# --- HTTP -------------------------------------------------------------------------------------------

for _name, _expect, _reason, _request in [
    ("unknown label", 404, "unknown EST label", rawhttp.http_request("GET", f"{EST}/nosuchlabel/cacerts")),
    (
        "path traversal in a label",
        404,
        "unknown EST label",
        rawhttp.http_request("GET", f"{EST}/..%2F..%2F..%2Fetc%2Fpasswd/cacerts"),
    ),
    (
        "path traversal in the path",
        404,
        "Not Found",
        rawhttp.http_request("GET", f"{EST}/../../../../etc/passwd"),
    ),
    ("unknown operation", 404, "unknown EST operation", rawhttp.http_request("GET", f"{EST}/appliance/x")),
    ("wrong method", 405, "POST only", rawhttp.http_request("GET", f"{EST}/simpleenroll")),
    ("DELETE on /cacerts", 405, "GET only", rawhttp.http_request("DELETE", f"{EST}/cacerts")),
    ("unparseable request line", 400, "malformed HTTP request", b"G\x00T / HTTP/1.1\r\n\r\n"),
    ("HTTP/2 preface", 400, "malformed HTTP request", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    (
        "CONNECT tunnel attempt",
        404,
        "Not Found",
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-x\r\n\x00\x01",
    ),
]:
    request_case(_name, _expect, _reason, _request)


@case("wrong content type", 415, "application/pkcs10")
async def _content_type(t: Target) -> Answer:
    request = t.enroll_request("simpleenroll", oven_csr(t), headers={"Content-Type": "text/plain"})
    return await t.exchange(request)


@case("compressed body", 415, "uncompressed")
async def _compressed(t: Target) -> Answer:
    request = t.enroll_request(
        "simpleenroll", gzip.compress(oven_csr(t)), headers={"Content-Encoding": "gzip"}
    )
    return await t.exchange(request)


@case("body over the limit", 413, "over")
async def _too_large(t: Target) -> Answer:
    return await t.enroll(b"A" * (MAX_BODY_BYTES + 1))


@case("body over the limit, chunked", 413, "over")
async def _too_large_chunked(t: Target) -> Answer:
    body = rawhttp.chunked(b"A" * (MAX_BODY_BYTES + 4000))
    return await t.exchange(t.enroll_request("simpleenroll", body, headers={"Transfer-Encoding": "chunked"}))


@case("Content-Length and chunked together (smuggling)", 400, "malformed HTTP request")
async def _smuggling(t: Target) -> Answer:
    headers = {"Content-Length": "4", "Transfer-Encoding": "chunked"}
    return await t.exchange(t.enroll_request("simpleenroll", b"MAA=", headers=headers))


@case("HTTP/1.0 GET /cacerts (answered, then closed)", 200)
async def _http10(t: Target) -> Answer:
    async with rawhttp.connect(t.port, tls=t.tls(), host=t.host) as connection:
        await connection.send(f"GET {EST}/cacerts HTTP/1.0\r\n\r\n".encode())
        answer = await connection.response()
        assert await connection.closed_by_server(within=5), "HTTP/1.0 connection left open"
    assert answer is not None and answer.headers["content-type"] == wire.PKCS7_MIME
    return answer


@case("HTTP/1.0 POST with a body but no Content-Length", 400, "malformed HTTP request")
async def _http10_post(t: Target) -> Answer:
    request = t.enroll_request("simpleenroll", b"").replace(b"HTTP/1.1", b"HTTP/1.0")
    return await t.exchange(request.replace(b"Content-Length: 0\r\n", b"") + oven_csr(t))


# --- credentials ------------------------------------------------------------------------------------


def with_authorization(t: Target, value: bytes) -> bytes:
    request = t.enroll_request("simpleenroll", oven_csr(t), authorization=False)
    head, _, body = request.partition(b"\r\n\r\n")
    return head + b"\r\nAuthorization: " + value + b"\r\n\r\n" + body


@case("non-UTF-8 credentials", 401, "not UTF-8")
async def _non_utf8(t: Target) -> Answer:
    token = base64.b64encode(t.user.encode() + b":\xff\xfe\xfd")
    return await t.exchange(with_authorization(t, b"Basic " + token))


@case("raw non-ASCII bytes in Authorization", 401, "not valid base64")
async def _raw_bytes(t: Target) -> Answer:
    return await t.exchange(with_authorization(t, b"Basic \xff\xfe\x80\x81"))


@case("credentials without a colon", 401, "no ':'")
async def _no_colon(t: Target) -> Answer:
    return await t.exchange(with_authorization(t, b"Basic " + base64.b64encode(t.user.encode())))


@case("Bearer token instead of Basic", 401, "only HTTP Basic")
async def _bearer(t: Target) -> Answer:
    return await t.exchange(with_authorization(t, b"Bearer abc.def.ghi"))


@case("no credentials", 401, "authenticate")
async def _no_credentials(t: Target) -> Answer:
    return await t.exchange(t.enroll_request("simpleenroll", oven_csr(t), authorization=False))


@case("appliance id with path characters", 400, "appliance id must be")
async def _id_traversal(t: Target) -> Answer:
    return await t.enroll(oven_csr(t), user="../../etc/passwd", pin="1")


@case("secret longer than 128 characters", 400, "longer than 128")
async def _long_secret(t: Target) -> Answer:
    return await t.enroll(oven_csr(t), pin="9" * 129)


# --- the TLS port -----------------------------------------------------------------------------------

request_case(
    "plain HTTP on the TLS port", CLOSED, "", rawhttp.http_request("GET", f"{EST}/cacerts"), tls=False
)
request_case("TLS garbage on the TLS port", CLOSED, "", b"\x16\x03\x01\xff\xff" + os.urandom(512), tls=False)


@case("client certificate from another CA", CLOSED)
async def _foreign_client_certificate(t: Target) -> Answer:
    key = forge.new_key()
    now = datetime.now(UTC)
    foreign = forge.certificate(
        None, key, key.public_key(), not_before=now, not_after=now + timedelta(days=1)
    )
    return await t.exchange(t.enroll_request("simplereenroll", oven_csr(t)), client=(foreign, key))


# --- re-enrollment ----------------------------------------------------------------------------------


@case("re-enroll without a client certificate", 401, "client certificate")
async def _reenroll_anonymous(t: Target) -> Answer:
    return await t.enroll(oven_csr(t), operation="simplereenroll")


@case("re-enroll with a revoked certificate", 403, "revoked")
async def _reenroll_revoked(t: Target) -> Answer:
    appliance_id = t.fresh_id("revoked")
    certificate, key = await t.enrolled(appliance_id, pin="1111")
    await t.owner("revoke", appliance_id)
    body = forge.body(forge.request_der(renewal_csr(key, certificate)))
    return await t.exchange(t.enroll_request("simplereenroll", body), client=(certificate, key))


@case("re-enroll with an expired certificate", 403, "expired")
async def _reenroll_expired(t: Target) -> Answer:
    certificate, key = await t.enrolled()
    expired = forge.expired_twin(certificate, t.ca, t.ca_key(), datetime.now(UTC))
    body = forge.body(forge.request_der(renewal_csr(key, expired)))
    return await t.exchange(t.enroll_request("simplereenroll", body), client=(expired, key))


@case("re-enroll asking for another appliance's name", 403, "subject differs")
async def _reenroll_other_name(t: Target) -> Answer:
    certificate, key = await t.enrolled()
    body = forge.body(forge.build(key, "fridge"))
    return await t.exchange(t.enroll_request("simplereenroll", body), client=(certificate, key))


@case("first enrollment presenting an issued certificate", 403, "simplereenroll")
async def _enroll_with_certificate(t: Target) -> Answer:
    certificate, key = await t.enrolled()
    body = forge.body(forge.build(forge.new_key(), t.user))
    return await t.exchange(t.enroll_request("simpleenroll", body), client=(certificate, key))


# --- waiting for the owner --------------------------------------------------------------------------


@case("pending request replayed with a different key", 202, "waiting", needs_owner_approval=True)
async def _replay_other_key(t: Target) -> Answer:
    """The owner approves one key; an impostor with the same id and PIN, on another connection and
    with its own key, must wait for the owner again and never get the approved key's certificate."""
    appliance_id, pin = t.fresh_id("replay"), "2468"
    original, impostor = forge.new_key(), forge.new_key()
    original_body = forge.body(forge.build(original, appliance_id))
    first = await t.enroll(original_body, user=appliance_id, pin=pin)
    assert first is not None and first.status == 202, first
    await t.owner("approve", appliance_id)
    replay = await t.enroll(forge.body(forge.build(impostor, appliance_id)), user=appliance_id, pin=pin)
    assert replay is not None
    if replay.headers.get("content-type") == wire.CERTS_ONLY:
        (stolen,) = wire.decode_certs_only(replay.body)
        assert stolen.public_key() != original.public_key(), "the impostor got the approved key's certificate"
    retry = await t.enroll(original_body, user=appliance_id, pin=pin)
    assert retry is not None and retry.status == 200, retry
    (issued,) = wire.decode_certs_only(retry.body)
    assert issued.public_key() == original.public_key()
    t.legitimate.add(issued.serial_number)
    await t.owner("reject", appliance_id)  # tidy up: the impostor's request stops waiting
    return replay


@case("pending request retried with a wrong PIN", 401, "wrong secret", needs_owner_approval=True)
async def _replay_wrong_pin(t: Target) -> Answer:
    appliance_id = t.fresh_id("wrongpin")
    body = forge.body(forge.build(forge.new_key(), appliance_id))
    first = await t.enroll(body, user=appliance_id, pin="1357")
    assert first is not None and first.status == 202, first
    answer = await t.enroll(body, user=appliance_id, pin="7531")
    await t.owner("reject", appliance_id)
    return answer
