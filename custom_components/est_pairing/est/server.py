"""The EST listener: aiohttp routes that map HTTP to registrar calls, and the guarded TLS site.

Every answer has a Content-Length, every base64 body a ``Content-Transfer-Encoding: base64``, and
every refusal has the status from :data:`STATUS` and a one-line reason: as a ``text/plain`` body, but
for a 401 (and a 202) as the status line's reason phrase, with no body. The PIN exchange
(``.../pake``, ``pairing``) speaks JSON; its 401 carries no challenge: a challenge would invite the
PIN over HTTP Basic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
import logging
import ssl
from typing import Any, Final

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from cryptography import x509

from .batching import WorkGroups
from .errors import (
    AuthenticationRequired,
    EstError,
    MalformedRequest,
    MethodNotAllowed,
    OperationNotSupported,
    PairingProofFailed,
    RequestTimeout,
    RequestTooLarge,
    RetryLater,
    UnknownResource,
    UnsupportedMediaType,
)
from .guard import ConnectionGuard
from .limits import DEFAULT_CONNECTION_LIMITS, MAX_BODY_BYTES, ConnectionLimits
from .lograte import OncePer
from .pairing import PinPairing
from .pake import MEDIA_TYPE as PAKE_MEDIA_TYPE, OPERATION as PAKE_OPERATION, encode, offer
from .policy import AwaitingOwner
from .registrar import Issued, Peer, Registrar
from .sessions import NO_CLIENT_CERTIFICATE, ClientChain
from .status import status_for
from .verifiers import SrpWork
from .wire import (
    CERTS_ONLY,
    CRL_PATH,
    CSRATTRS,
    EST_PATH,
    PKCS7_MIME,
    PKCS8,
    PKCS10,
    PKIX_CRL,
    TRANSFER_ENCODING,
    certs_only_der,
    encode_base64,
    encode_certs_only,
    encode_csrattrs,
    encode_multipart,
    load_csr,
    media_type,
    parse_basic_authorization,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_REALM: Final = "EST Appliance Pairing"
DEFAULT_LABELS: Final = ("appliance",)

_CLOSE_AFTER: Final = frozenset({408, 413})  # the rest of the body was not read: drop the connection
_MAX_REASON: Final = 200
# 501 is the documented answer for an operation not offered (fullcmc); 503 is warned about
# once per BUSY_WARNING_INTERVAL. Any other 5xx is a fault worth a warning each time.
_NOT_FAULTS: Final = frozenset({501, 503})
BUSY_WARNING_INTERVAL: Final = 600.0  # seconds
_SINGLE_HEADERS: Final = (hdrs.AUTHORIZATION, hdrs.CONTENT_TYPE)  # a request that repeats one gets 400

_BODY_TIMEOUT: Final = web.AppKey("body_timeout", float)
_GUARD: Final = web.AppKey("guard", ConnectionGuard)

type Handler = Callable[[web.Request], Awaitable[web.Response]]
type NextHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Operation:
    methods: tuple[str, ...]
    handler: Handler


class EstApplication:
    """Builds the aiohttp application for one registrar."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        labels: Iterable[str] = DEFAULT_LABELS,
        realm: str = DEFAULT_REALM,
        work: SrpWork | None = None,
    ) -> None:
        self.registrar = registrar
        self.pairing = PinPairing(registrar, work)
        self.labels = frozenset(labels)
        self._challenge = 'Basic realm="{}", charset="UTF-8"'.format(realm.replace('"', "'"))
        self.busy_warning = OncePer(BUSY_WARNING_INTERVAL)
        self.work_groups = WorkGroups()
        self._operations: dict[str, _Operation] = {
            "cacerts": _Operation((hdrs.METH_GET,), self._cacerts),
            "csrattrs": _Operation((hdrs.METH_GET,), self._csrattrs),
            "simpleenroll": _Operation((hdrs.METH_POST,), self._simpleenroll),
            "simplereenroll": _Operation((hdrs.METH_POST,), self._simplereenroll),
            "serverkeygen": _Operation((hdrs.METH_POST,), self._serverkeygen),
            "fullcmc": _Operation((hdrs.METH_POST,), self._fullcmc),
            PAKE_OPERATION: _Operation((hdrs.METH_POST, hdrs.METH_GET), self._pake),
        }

    def build(self, guard: ConnectionGuard | None = None) -> web.Application:
        """The application; ``guard`` (from :class:`EstListener`) times connections out."""
        middlewares: list[Middleware] = [self._errors]
        if guard is not None:
            middlewares.insert(0, guard.middleware)
        app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
        app[_BODY_TIMEOUT] = (guard.limits if guard is not None else DEFAULT_CONNECTION_LIMITS).body_timeout
        if guard is not None:
            app[_GUARD] = guard
        app.router.add_route("*", f"{EST_PATH}/{{op}}", self._dispatch)
        app.router.add_route("*", f"{EST_PATH}/{{label}}/{{op}}", self._dispatch)
        app.router.add_route("*", CRL_PATH, self._crl)
        return app

    # --- plumbing -----------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: NextHandler) -> web.StreamResponse:
        try:
            return await handler(request)
        except EstError as err:
            return self._refusal(err)
        except web.HTTPException as err:  # the router's own 404s
            return _text(err.status, err.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("EST request %s %s failed", request.method, request.path)
            return _text(500, "internal error; nothing was issued")

    def _refusal(self, err: EstError) -> web.Response:
        status = status_for(err)
        if isinstance(err, AuthenticationRequired):
            response = _bodiless(status, str(err))
            if not isinstance(err, PairingProofFailed):
                response.headers[hdrs.WWW_AUTHENTICATE] = self._challenge
        else:
            response = _text(status, str(err))
        if isinstance(err, RetryLater):
            response.headers[hdrs.RETRY_AFTER] = str(err.retry_after)
        elif isinstance(err, MethodNotAllowed):
            response.headers[hdrs.ALLOW] = ", ".join(err.allowed)
        if status in _CLOSE_AFTER:
            response.force_close()
        if status == 503 and self.busy_warning.due():
            # The server is full of requests waiting for the owner: worth one warning, not one per
            # request (any device on the LAN could write them at will).
            _LOGGER.warning("EST answered 503: %s %s", err, self.busy_warning.note())
        elif status >= 500 and status not in _NOT_FAULTS:
            _LOGGER.warning("EST answered %s: %s", status, err)
        else:
            _LOGGER.debug("EST refused a request with %s: %s", status, err)
        return response

    async def _dispatch(self, request: web.Request) -> web.Response:
        label = request.match_info.get("label")
        if label is not None and label not in self.labels:
            raise UnknownResource("unknown EST label")
        operation = self._operations.get(request.match_info["op"])
        if operation is None:
            raise UnknownResource("unknown EST operation")
        allowed = _with_head(*operation.methods)
        if request.method not in allowed:
            raise MethodNotAllowed(f"this operation takes {' or '.join(operation.methods)} only", allowed)
        for name in _SINGLE_HEADERS:  # which one counts would be a guess (RFC 9110 §5.3)
            if len(request.headers.getall(name, ())) > 1:
                raise MalformedRequest(f"the request has more than one {name} header")
        return await operation.handler(request)

    # --- operations ---------------------------------------------------------------------------------

    async def _cacerts(self, request: web.Request) -> web.Response:
        return _base64(PKCS7_MIME, encode_certs_only(self.registrar.ca_certificates()))

    async def _csrattrs(self, request: web.Request) -> web.Response:
        der = encode_csrattrs(self.registrar.csr_attributes())
        return _base64(CSRATTRS, encode_base64(der))

    async def _simpleenroll(self, request: web.Request) -> web.Response:
        csr = await self._read_csr(request)
        outcome = await self.registrar.enroll(_peer(request), csr)
        return _enrollment_response(outcome)

    async def _simplereenroll(self, request: web.Request) -> web.Response:
        csr = await self._read_csr(request)
        return _enrollment_response(await self.registrar.reenroll(_peer(request), csr))

    async def _serverkeygen(self, request: web.Request) -> web.Response:
        csr = await self._read_csr(request)
        outcome = await self.registrar.serverkeygen(_peer(request), csr)
        if isinstance(outcome, AwaitingOwner):
            return _enrollment_response(outcome)
        body, content_type = encode_multipart(
            [
                (PKCS8, outcome.private_key_der()),
                (CERTS_ONLY, certs_only_der([outcome.issued.certificate])),
            ]
        )
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def _read_csr(self, request: web.Request) -> x509.CertificateSigningRequest:
        """The request's CSR, checked once its group's turn comes (the rest of its handling follows)."""
        if media_type(request.headers.get(hdrs.CONTENT_TYPE)) != PKCS10:
            raise UnsupportedMediaType(f"send the certificate request as {PKCS10}")
        if request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() != "identity":
            raise UnsupportedMediaType("send the certificate request uncompressed (no Content-Encoding)")
        body = await _read_body(request)
        await self.work_groups.wait_turn()
        return load_csr(body)

    async def _pake(self, request: web.Request) -> web.Response:
        """The PIN exchange: GET lists the methods offered, POST takes one message."""
        if request.method != hdrs.METH_POST:
            return _json(offer())
        if media_type(request.headers.get(hdrs.CONTENT_TYPE)) != PAKE_MEDIA_TYPE:
            raise UnsupportedMediaType(f"send the PIN exchange's messages as {PAKE_MEDIA_TYPE}")
        if request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() != "identity":
            raise UnsupportedMediaType("send the message uncompressed (no Content-Encoding)")
        body = await _read_body(request)
        await self.work_groups.wait_turn()  # a start carries a CSR to check
        outcome = await self.pairing.answer(body, request.remote)
        if isinstance(outcome, AwaitingOwner):
            return _enrollment_response(outcome)
        return _json(outcome)

    async def _fullcmc(self, request: web.Request) -> web.Response:
        raise OperationNotSupported("full CMC is not offered; use simpleenroll")

    async def _crl(self, request: web.Request) -> web.Response:
        allowed = _with_head(hdrs.METH_GET)
        if request.method not in allowed:
            raise MethodNotAllowed("the CRL is fetched with GET", allowed)
        return web.Response(body=self.registrar.crl(), headers={hdrs.CONTENT_TYPE: PKIX_CRL})


# --- request and response helpers ---------------------------------------------------------------------


def _with_head(*methods: str) -> tuple[str, ...]:
    """The methods a resource answers: HEAD wherever GET works (RFC 9110 §9.3.2).

    aiohttp sends a HEAD answer's headers (Content-Length included) and leaves its body out.
    """
    return (*methods, hdrs.METH_HEAD) if hdrs.METH_GET in methods else methods


def _peer(request: web.Request) -> Peer:
    """The TLS client certificate, else the HTTP Basic credentials.

    A certificate authenticates the request by itself (§3.2.3: HTTP authentication is optional
    beside it): an Authorization header it does not need, whatever its scheme, is not read.
    """
    client_chain = _client_chain(request)
    try:  # TLS verified the chain with OpenSSL, which accepts some DER that cryptography does not
        chain = tuple(x509.load_der_x509_certificate(der) for der in client_chain.certificates)
    except ValueError:
        raise MalformedRequest("client certificate cannot be decoded") from None
    credentials = None if chain else parse_basic_authorization(request.headers.get(hdrs.AUTHORIZATION))
    return Peer(
        address=request.remote,
        credentials=credentials,
        certificate_chain=chain,
        chain_complete=client_chain.complete,
    )


def _client_chain(request: web.Request) -> ClientChain:
    guard = request.app.get(_GUARD)
    if guard is not None and (chain := guard.client_chain(request.protocol)) is not None:
        return chain  # resumed TLS 1.2 sessions included
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        verified = ssl_object.get_verified_chain()
        return ClientChain(tuple(verified)) if verified else NO_CLIENT_CERTIFICATE
    return NO_CLIENT_CERTIFICATE


async def _read_body(request: web.Request) -> bytes:
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise RequestTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    content = request.content
    if content.is_eof() and content.exception() is None:
        # The whole body came with the headers, as a CSR of a few hundred bytes nearly always does:
        # nothing to wait for, so no timer to set.
        body = content.read_nowait()
    else:
        body = await _receive_body(request)
    if len(body) > MAX_BODY_BYTES:
        raise RequestTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    if not body:
        raise MalformedRequest("request body is empty")
    return body


async def _receive_body(request: web.Request) -> bytes:
    """The body as it arrives, within the body timeout; no more of it once it is over the bound."""
    chunks: list[bytes] = []
    size = 0
    timeout = request.app[_BODY_TIMEOUT]
    try:
        async with asyncio.timeout(timeout):
            while size <= MAX_BODY_BYTES and (chunk := await request.content.readany()):
                size += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body did not arrive within {timeout:g} s") from None
    except web.RequestPayloadError:
        raise MalformedRequest("request body does not follow its transfer coding") from None
    except ConnectionError:  # the peer left mid-upload; nobody will read the answer
        raise MalformedRequest("connection closed before the request body was complete") from None
    return b"".join(chunks)


def _enrollment_response(outcome: Issued | AwaitingOwner) -> web.Response:
    if isinstance(outcome, AwaitingOwner):
        _LOGGER.debug("EST answered 202: %s waits for the owner", outcome.pending.appliance_id)
        response = _bodiless(202, "waiting for the owner to approve this appliance")
        response.headers[hdrs.RETRY_AFTER] = str(outcome.retry_after)
        return response
    return _base64(CERTS_ONLY, encode_certs_only([outcome.certificate]))


def _base64(content_type: str, body: bytes) -> web.Response:
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type, TRANSFER_ENCODING: "base64"})


def _json(message: dict[str, Any]) -> web.Response:
    return web.Response(body=encode(message), content_type=PAKE_MEDIA_TYPE)


def _text(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=_one_line(reason) + "\n", content_type="text/plain")


def _bodiless(status: int, reason: str) -> web.Response:
    """An answer with no body (``Content-Length: 0``), its reason in the status line instead.

    For the answers a client acts on by itself, a 401 challenge and a 202: Bouncy Castle's EST
    client closes them unread and fails on any body it left unread. The reason phrase is there for
    people (``curl -i``) and for clients that show it (aiohttp's ``reason``), escaped to printable
    ASCII (RFC 9112 §4 leaves other bytes to each client's taste).
    """
    phrase = _one_line(reason).encode("unicode_escape").decode("ascii")[:_MAX_REASON]
    return web.Response(status=status, reason=phrase)


def _one_line(reason: str) -> str:
    return " ".join(reason.split())[:_MAX_REASON] or "error"


# --- the listener -------------------------------------------------------------------------------------


class _EstRequestHandler(web.RequestHandler):
    """aiohttp's per-connection HTTP handler, refusing what it cannot parse in this listener's style.

    aiohttp answers an unparseable request (bad request line, header, chunk size...) itself, before
    any middleware runs: with a multi-line reason, and with a logged traceback that any device on the
    LAN could provoke at will.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        reason = " ".join(message.split("\n", 1)[0].split()).rstrip(":") if message else ""
        if status >= 500:  # our bug, not the peer's bytes: aiohttp logs it with its traceback
            super().handle_error(request, status, exc, message)
        else:
            _LOGGER.debug("EST refused an unparseable request with %s: %s", status, reason)
        response = _text(status, f"malformed HTTP request: {reason}" if reason else HTTPStatus(status).phrase)
        response.force_close()
        return response

    async def finish_response(
        self,
        request: web.BaseRequest,
        resp: web.StreamResponse,
        start_time: Any,  # float in aiohttp 3.11, float | None later
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        except HttpProcessingError as err:
            # After an upgrade request (CONNECT, or an Upgrade header: EST uses neither) aiohttp
            # parses the bytes that followed it only here, and unparseable ones escaped as an
            # unhandled error: a logged traceback and no answer. Answer, and close.
            _LOGGER.debug("EST refused bytes after an upgrade request: %s", " ".join(err.message.split()))
        resp.force_close()
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except ConnectionError:
            return resp, True
        return resp, False


class _GuardedSite(web.BaseSite):
    """A plain TCP site whose connections the guard counts, upgrades to TLS, and hands to aiohttp."""

    def __init__(
        self, runner: web.BaseRunner, host: str | None, port: int, *, guard: ConnectionGuard
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard

    @property
    def name(self) -> str:
        return f"https://{self._host or '0.0.0.0'}:{self._port}"  # noqa: S104

    @property
    def bound_port(self) -> int:
        """The port the socket is bound to."""
        sockets = self._server.sockets if isinstance(self._server, asyncio.Server) else ()
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("runner is not set up")
        loop = asyncio.get_running_loop()
        # A dict: aiohttp releases disagree on whether access_log may be typed None. No decompression:
        # EST bodies are never compressed, and a small gzip body can inflate a thousandfold. aiohttp
        # drains an unread body before closing (so the client sees the refusal rather than a reset)
        # for 10 s by default: a body trickling in after a 408 would hold the connection that long.
        options: dict[str, Any] = {
            "access_log": None,
            "keepalive_timeout": self._guard.limits.keepalive_timeout,
            "lingering_time": self._guard.limits.linger_timeout,
            "auto_decompress": False,
        }

        def handler() -> asyncio.Protocol:
            return _EstRequestHandler(server, loop=loop, **options)

        self._server = await loop.create_server(
            self._guard.wrap(handler),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )


class EstListener:
    """Runs an :class:`EstApplication` on its own HTTPS port."""

    def __init__(
        self,
        application: EstApplication,
        *,
        host: str | None,
        port: int,
        ssl_context: ssl.SSLContext,
        limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
    ) -> None:
        self.guard = ConnectionGuard(limits, ssl_context)
        self.application = application
        self._app = application.build(self.guard)
        self._host = host
        self._port = port
        self.ssl_context = ssl_context  # replacing its certificate affects new handshakes
        self._runner: web.AppRunner | None = None
        self._site: _GuardedSite | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return self._port if self._site is None else self._site.bound_port

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the port cannot be bound."""
        runner = web.AppRunner(self._app, shutdown_timeout=2.0, handle_signals=False)
        await runner.setup()
        site = _GuardedSite(runner, self._host, self._port, guard=self.guard)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
        await self.guard.close()  # connections aiohttp does not know yet: those in their handshake
        self._runner = self._site = None
