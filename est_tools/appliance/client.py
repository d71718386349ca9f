"""Reference EST client (appliances, tests, benchmarks): TLS contexts, bootstrap, enroll, re-enroll, keys.

Bootstrap follows RFC 7030 §4.1.1: /cacerts is fetched over a provisional, unverified TLS session
that carries no credentials; the CA is accepted only if it matches an out-of-band fingerprint (or,
without one, on first use, which the caller must tell its user about); every later request verifies
the server against that CA.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
import math
import ssl
from typing import Self

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import NameOID

from custom_components.est_pairing.est.csr import ApplianceDetails, CsrAttribute
from custom_components.est_pairing.est.errors import (
    EXCHANGE_GONE_MARK,
    PROOF_FAILED_MARK,
    ApprovalTimeout,
    CertificateExpired,
    CertificateRevoked,
    EstError,
    ExchangeGone,
    FingerprintMismatch,
    LockedOut,
    MethodNotAllowed,
    PairingProofFailed,
    ProtocolError,
    Rejected,
    RetryLater,
    UnknownResource,
)
from custom_components.est_pairing.est.fingerprints import certificate_fingerprint, normalize_fingerprint
from custom_components.est_pairing.est.status import ERROR_FOR_STATUS
from custom_components.est_pairing.est.tls import load_cert_chain
from custom_components.est_pairing.est.wire import (
    CRL_PATH,
    CSRATTRS,
    EST_PATH,
    MULTIPART_MIXED,
    PKCS7_MIME,
    PKCS8,
    PKCS10,
    PKIX_CRL,
    basic_authorization,
    decode_body,
    decode_certs_only,
    decode_csrattrs,
    decode_multipart,
    encode_base64,
    media_type,
)

_NAME_ATTRIBUTE = x509.ObjectIdentifier("2.5.4.41")
_MIN_WAIT, _MAX_WAIT = 1, 3600


@dataclass(frozen=True, slots=True)
class Pending:
    """The server answered 202: ask again after ``retry_after`` seconds."""

    retry_after: int
    message: str


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """The CA a server presented, and whether it was checked against an out-of-band fingerprint."""

    ca_certificate: x509.Certificate
    fingerprint: str
    verified_out_of_band: bool


def client_ssl_context(
    trust_anchor: x509.Certificate | None,
    *,
    certificate: x509.Certificate | None = None,
    private_key: PrivateKeyTypes | None = None,
    intermediates: Sequence[x509.Certificate] = (),
) -> ssl.SSLContext:
    """A client context that verifies the server against ``trust_anchor``.

    ``trust_anchor=None`` gives the provisional, unverified context of RFC 7030 §4.1.1, good only for
    fetching /cacerts; never send credentials over it. Blocking when a client certificate is given;
    the handshake presents it followed by ``intermediates`` (a factory certificate's manufacturer
    CAs, nearest first), since the server may trust only the manufacturer's root.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if trust_anchor is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=trust_anchor.public_bytes(serialization.Encoding.DER))
    if certificate is not None and private_key is not None:
        load_cert_chain(context, [certificate, *intermediates], private_key)
    return context


def build_csr(
    private_key: CertificateIssuerPrivateKeyTypes,
    appliance_id: str,
    *,
    details: ApplianceDetails | None = None,
    dns_names: Iterable[str] = (),
) -> x509.CertificateSigningRequest:
    """A request as the appliance-maker profile describes it (docs/appliance-profile.md)."""
    details = details or ApplianceDetails()
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, appliance_id)]
    for oid, value in (
        (NameOID.ORGANIZATION_NAME, details.manufacturer),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, details.model),
        (NameOID.SERIAL_NUMBER, details.serial_number),
        (_NAME_ATTRIBUTE, details.name),
    ):
        if value:
            attributes.append(x509.NameAttribute(oid, value))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    names = [x509.DNSName(name) for name in dns_names]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _sign_csr(builder, private_key)


def renewal_csr(
    private_key: CertificateIssuerPrivateKeyTypes, current: x509.Certificate
) -> x509.CertificateSigningRequest:
    """A re-enrollment request: Subject and SubjectAltName copied from the current certificate."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(current.subject)
    try:
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    return _sign_csr(builder, private_key)


def _sign_csr(
    builder: x509.CertificateSigningRequestBuilder, private_key: CertificateIssuerPrivateKeyTypes
) -> x509.CertificateSigningRequest:
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private_key, algorithm)


class EstClient:
    """Talks to one EST server whose CA is known (see :meth:`bootstrap`)."""

    def __init__(
        self,
        base_url: str,
        ca_certificate: x509.Certificate,
        *,
        label: str | None = None,
        session: aiohttp.ClientSession | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_certificate = ca_certificate
        self._prefix = f"{self.base_url}{EST_PATH}" + (f"/{label}" if label else "")
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._ssl = client_ssl_context(ca_certificate)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    # --- bootstrap ----------------------------------------------------------------------------------

    @staticmethod
    async def fetch_ca(
        base_url: str,
        *,
        expected_fingerprint: str | None = None,
        label: str | None = None,
        request_timeout: float = 30.0,
    ) -> Bootstrap:
        """Provisional /cacerts (§4.1.1): no server verification, no credentials sent.

        With ``expected_fingerprint`` the CA must match it, else FingerprintMismatch. Without it
        the self-signed CA in the answer is returned for trust on first use.
        """
        url = f"{base_url.rstrip('/')}{EST_PATH}" + (f"/{label}" if label else "") + "/cacerts"
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(None), force_close=True)
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=request_timeout)
            ) as session,
            session.get(url) as response,
        ):
            body = await checked_body(response, PKCS7_MIME)
        certificates = decode_certs_only(body)
        roots = [c for c in certificates if c.issuer == c.subject] or certificates
        if expected_fingerprint is None:
            root = roots[0]
            return Bootstrap(root, certificate_fingerprint(root), verified_out_of_band=False)
        expected = normalize_fingerprint(expected_fingerprint)
        for certificate in certificates:
            if certificate_fingerprint(certificate) == expected:
                return Bootstrap(certificate, expected, verified_out_of_band=True)
        raise FingerprintMismatch(
            f"the server's CA has fingerprint {certificate_fingerprint(roots[0])}, "
            f"not the expected {expected}"
        )

    # --- operations ---------------------------------------------------------------------------------

    async def cacerts(self) -> list[x509.Certificate]:
        """/cacerts over the verified session."""
        async with self._request("GET", "cacerts") as response:
            return decode_certs_only(await checked_body(response, PKCS7_MIME))

    async def csrattrs(self) -> list[CsrAttribute]:
        """/csrattrs; an empty list when the server has none (204 or 404, §4.5.2)."""
        try:
            async with self._request("GET", "csrattrs") as response:
                if response.status == 204:
                    return []
                return decode_csrattrs(decode_body(await checked_body(response, CSRATTRS)))
        except UnknownResource:
            return []

    async def crl(self) -> x509.CertificateRevocationList:
        """The CRL the server publishes."""
        async with self._request("GET", url=f"{self.base_url}{CRL_PATH}") as response:
            return x509.load_der_x509_crl(await checked_body(response, PKIX_CRL))

    async def simpleenroll(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        username: str | None = None,
        password: str = "",
        client_ssl: ssl.SSLContext | None = None,
    ) -> x509.Certificate | Pending:
        """One simpleenroll attempt: the certificate, or Pending."""
        async with self._request(
            "POST", "simpleenroll", csr=csr, username=username, password=password, ssl=client_ssl
        ) as response:
            if response.status == 202:
                return await pending_answer(response)
            return self._issued_to(csr, await checked_body(response, PKCS7_MIME))

    async def enroll(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        username: str | None = None,
        password: str = "",
        client_ssl: ssl.SSLContext | None = None,
        approval_timeout: float = 600.0,
        on_pending: Callable[[Pending], None] | None = None,
    ) -> x509.Certificate:
        """simpleenroll, following 202/Retry-After until approved or ``timeout`` runs out."""
        return await self._until_approved(
            lambda: self.simpleenroll(csr, username=username, password=password, client_ssl=client_ssl),
            approval_timeout=approval_timeout,
            on_pending=on_pending,
        )

    async def reenroll(
        self,
        csr: x509.CertificateSigningRequest,
        certificate: x509.Certificate,
        private_key: PrivateKeyTypes,
        *,
        approval_timeout: float = 600.0,
        on_pending: Callable[[Pending], None] | None = None,
    ) -> x509.Certificate:
        """simplereenroll, authenticated by the current certificate; ``csr`` may carry a new key.

        A 202 is followed as for :meth:`enroll` (RFC 7030 §4.2.3 covers re-enrollment too).
        """
        client_ssl = await asyncio.to_thread(
            client_ssl_context, self.ca_certificate, certificate=certificate, private_key=private_key
        )

        async def attempt() -> x509.Certificate | Pending:
            async with self._request("POST", "simplereenroll", csr=csr, ssl=client_ssl) as response:
                if response.status == 202:
                    return await pending_answer(response)
                return self._issued_to(csr, await checked_body(response, PKCS7_MIME))

        return await self._until_approved(attempt, approval_timeout=approval_timeout, on_pending=on_pending)

    async def serverkeygen(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        username: str | None = None,
        password: str = "",
        approval_timeout: float = 600.0,
        on_pending: Callable[[Pending], None] | None = None,
    ) -> tuple[PrivateKeyTypes, x509.Certificate]:
        """serverkeygen, following 202 like :meth:`enroll`; returns the key and its certificate."""

        async def attempt() -> tuple[PrivateKeyTypes, x509.Certificate] | Pending:
            async with self._request(
                "POST", "serverkeygen", csr=csr, username=username, password=password
            ) as response:
                if response.status == 202:
                    return await pending_answer(response)
                content_type = response.headers.get("Content-Type", "")
                body = await checked_body(response, MULTIPART_MIXED)
                return self._key_and_certificate(body, content_type)

        return await self._until_approved(attempt, approval_timeout=approval_timeout, on_pending=on_pending)

    # --- helpers ------------------------------------------------------------------------------------

    async def _until_approved[T](
        self,
        attempt: Callable[[], Awaitable[T | Pending]],
        *,
        approval_timeout: float,
        on_pending: Callable[[Pending], None] | None,
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + approval_timeout
        while True:
            result = await attempt()
            if not isinstance(result, Pending):
                return result
            if on_pending is not None:
                on_pending(result)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ApprovalTimeout(f"the owner did not approve within {approval_timeout:g} s")
            await asyncio.sleep(min(result.retry_after, remaining))

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    @asynccontextmanager
    async def _request(
        self,
        method: str,
        operation: str = "",
        *,
        url: str | None = None,
        csr: x509.CertificateSigningRequest | None = None,
        username: str | None = None,
        password: str = "",
        ssl: ssl.SSLContext | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request over the verified session; refusals (4xx, 5xx) raise library errors."""
        headers = {}
        data = None
        if csr is not None:
            headers["Content-Type"] = PKCS10
            data = encode_base64(csr.public_bytes(serialization.Encoding.DER))
        if username is not None:
            headers["Authorization"] = basic_authorization(username, password)
        async with self._session_or_new().request(
            method,
            url or f"{self._prefix}/{operation}",
            data=data,
            headers=headers,
            ssl=ssl or self._ssl,
            timeout=self._timeout,
        ) as response:
            if response.status >= 400:
                raise error_for(response, await response.text(errors="replace"))
            yield response

    def _issued_to(self, csr: x509.CertificateSigningRequest, body: bytes) -> x509.Certificate:
        certificates = decode_certs_only(body)
        mine = [c for c in certificates if c.public_key() == csr.public_key()]
        if not mine:
            raise ProtocolError("the server returned a certificate for a different key")
        self._check_issued(mine[0])
        return mine[0]

    def _key_and_certificate(
        self, body: bytes, content_type: str
    ) -> tuple[PrivateKeyTypes, x509.Certificate]:
        parts = dict(decode_multipart(body, content_type))
        if PKCS8 not in parts or PKCS7_MIME not in parts:
            raise ProtocolError("serverkeygen response lacks the PKCS#8 or the PKCS#7 part")
        try:
            private_key = serialization.load_der_private_key(parts[PKCS8], password=None)
        except ValueError:
            raise ProtocolError("serverkeygen key part is not PKCS#8") from None
        certificates = decode_certs_only(parts[PKCS7_MIME])
        mine = [c for c in certificates if c.public_key() == private_key.public_key()]
        if not mine:
            raise ProtocolError("serverkeygen certificate does not match its key")
        self._check_issued(mine[0])
        return private_key, mine[0]

    def _check_issued(self, certificate: x509.Certificate) -> None:
        try:
            certificate.verify_directly_issued_by(self.ca_certificate)
        except Exception:  # noqa: BLE001 - any failure means "not from our CA"
            raise ProtocolError("the issued certificate does not chain to the household CA") from None


# Some refusals share a status; the server's one-line reasons (throttle.py, registrar.py, policy.py,
# pake.py) tell them apart.
_REFINED: tuple[tuple[int, str, type[EstError]], ...] = (
    (403, "revoked", CertificateRevoked),
    (403, "owner rejected", Rejected),
    (403, "has expired", CertificateExpired),
    (429, "wrong secrets", LockedOut),
    (400, EXCHANGE_GONE_MARK, ExchangeGone),
    (401, PROOF_FAILED_MARK, PairingProofFailed),
)


def error_for(response: aiohttp.ClientResponse, body: str) -> EstError:
    """The library's error for a refusal (4xx, 5xx), with the server's one-line reason."""
    reason = _reason(response, body)
    line = f"{response.status}: {reason}"
    cls = ERROR_FOR_STATUS.get(response.status, ProtocolError)
    for status, words, refined in _REFINED:
        if response.status == status and words in reason:
            cls = refined
    if issubclass(cls, RetryLater):
        return cls(line, _retry_after(response))
    if issubclass(cls, MethodNotAllowed):
        return cls(line, tuple(response.headers.get("Allow", "").replace(" ", "").split(",")))
    return cls(line)


async def checked_body(response: aiohttp.ClientResponse, expected_type: str) -> bytes:
    """A 200 answer's body of the expected type; the library's error otherwise."""
    if response.status >= 400:
        raise error_for(response, await response.text(errors="replace"))
    if response.status != 200:
        raise ProtocolError(f"unexpected status {response.status}")
    got = media_type(response.headers.get("Content-Type"))
    if got != media_type(expected_type):
        raise ProtocolError(f"expected {expected_type}, got {got or 'no content type'}")
    return await response.read()


async def pending_answer(response: aiohttp.ClientResponse) -> Pending:
    """A 202's Retry-After and reason."""
    return Pending(_retry_after(response), _reason(response, await response.text(errors="replace")))


def _reason(response: aiohttp.ClientResponse, body: str) -> str:
    """The server's one-line reason: its text/plain body, else its status line's reason phrase.

    A 401 or a 202 from the listener has no body: its reason is in the status line.
    """
    reason = body.strip() or (response.reason or "").strip() or "no reason given"
    return reason.splitlines()[0]


def _retry_after(response: aiohttp.ClientResponse) -> int:
    """Retry-After in seconds (RFC 9110 §10.2.3), clamped to a second .. an hour.

    Either delay-seconds or an HTTP-date, taken relative to the response's Date (else to now); 5 s
    when it is missing or unreadable.
    """
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = int(value)
    except ValueError:
        seconds = _seconds_until(value, response.headers.get("Date"))
    return min(max(seconds, _MIN_WAIT), _MAX_WAIT)


def _seconds_until(http_date: str, date_header: str | None) -> int:
    try:
        moment = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return 5
    now = datetime.now(UTC)
    if date_header:
        with suppress(TypeError, ValueError):
            now = parsedate_to_datetime(date_header)
    moment, now = (m if m.tzinfo else m.replace(tzinfo=UTC) for m in (moment, now))  # "-0000" is UTC
    return math.ceil((moment - now).total_seconds())
