"""The EST listener: HTTP requests mapped to registrar calls, served by aiohttp's low-level server.

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
import inspect
import logging
import socket
import ssl
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import __version__ as aiohttp_version, hdrs, web
from aiohttp.http import HttpProcessingError
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
from .pake import (
    MEDIA_TYPE as PAKE_MEDIA_TYPE,
    OPERATION as PAKE_OPERATION,
    ProveRequest,
    encode,
    offer,
    parse_message,
)
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

_EST_PREFIX: Final = f"{EST_PATH}/"
_BACKLOG: Final = 128  # connections the kernel queues before accept (aiohttp's own sites use 128)
_SHUTDOWN_TIMEOUT: Final = 2.0  # seconds a request in progress may take to finish when the listener stops

type Handler = Callable[[web.BaseRequest, ClientChain], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class _Operation:
    methods: tuple[str, ...]
    handler: Handler


class EstApplication:
    """Answers the EST requests of one registrar: aiohttp's low-level handler, with no router."""

    def __init__(
        self,
        registrar: Registrar,
        *,
        labels: Iterable[str] = DEFAULT_LABELS,
        realm: str = DEFAULT_REALM,
        work: SrpWork | None = None,
        body_timeout: float = DEFAULT_CONNECTION_LIMITS.body_timeout,
    ) -> None:
        self.registrar = registrar
        self.pairing = PinPairing(registrar, work)
        self.labels = frozenset(labels)
        self.body_timeout = body_timeout
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
        self._paths: dict[str, Handler] = {CRL_PATH: self._crl}  # resources outside the EST tree

    async def handle(
        self, request: web.BaseRequest, client_chain: ClientChain = NO_CLIENT_CERTIFICATE
    ) -> web.Response:
        """The answer to one request; ``client_chain`` is what TLS verified of the client."""
        try:
            return await self._route(request, client_chain)
        except EstError as err:
            return self._refusal(err)
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("EST request %s %s failed", request.method, request.path)
            return _text(500, "internal error; nothing was issued")

    # --- plumbing -----------------------------------------------------------------------------------

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

    async def _route(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        """``EST_PATH/[LABEL/]OPERATION``, or a resource of :attr:`_paths`; the rest is a 404."""
        path = request.rel_url.raw_path  # split before decoding: a %2F is part of its segment
        if path.startswith(_EST_PREFIX):
            segments = [unquote(segment) for segment in path[len(_EST_PREFIX) :].split("/")]
            if len(segments) > 2 or not all(segments):
                raise UnknownResource("Not Found")
            if len(segments) == 2 and segments[0] not in self.labels:
                raise UnknownResource("unknown EST label")
            operation = self._operations.get(segments[-1])
            if operation is None:
                raise UnknownResource("unknown EST operation")
            _check_method(
                request, operation.methods, f"this operation takes {' or '.join(operation.methods)} only"
            )
            for header in _SINGLE_HEADERS:  # which one counts would be a guess (RFC 9110 §5.3)
                if len(request.headers.getall(header, ())) > 1:
                    raise MalformedRequest(f"the request has more than one {header} header")
            return await operation.handler(request, client_chain)
        if (handler := self._paths.get(unquote(path))) is not None:
            return await handler(request, client_chain)
        raise UnknownResource("Not Found")

    # --- operations ---------------------------------------------------------------------------------

    async def _cacerts(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        return _base64(PKCS7_MIME, encode_certs_only(self.registrar.ca_certificates()))

    async def _csrattrs(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        der = encode_csrattrs(self.registrar.csr_attributes())
        return _base64(CSRATTRS, encode_base64(der))

    async def _simpleenroll(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        csr = await self._read_csr(request)
        outcome = await self.registrar.enroll(_peer(request, client_chain), csr)
        return _enrollment_response(outcome)

    async def _simplereenroll(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        csr = await self._read_csr(request)
        return _enrollment_response(await self.registrar.reenroll(_peer(request, client_chain), csr))

    async def _serverkeygen(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        csr = await self._read_csr(request)
        outcome = await self.registrar.serverkeygen(_peer(request, client_chain), csr)
        if isinstance(outcome, AwaitingOwner):
            return _enrollment_response(outcome)
        body, content_type = encode_multipart(
            [
                (PKCS8, outcome.private_key_der()),
                (CERTS_ONLY, certs_only_der([outcome.issued.certificate])),
            ]
        )
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def _read_message(self, request: web.BaseRequest, media: str, what: str) -> bytes:
        """The request's body, sent as ``media`` and uncompressed."""
        if media_type(request.headers.get(hdrs.CONTENT_TYPE)) != media:
            raise UnsupportedMediaType(f"send {what} as {media}")
        if request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() != "identity":
            raise UnsupportedMediaType(f"send {what} uncompressed (no Content-Encoding)")
        return await _read_body(request, self.body_timeout)

    async def _read_csr(self, request: web.BaseRequest) -> x509.CertificateSigningRequest:
        """The request's CSR, checked once its work group's turn comes.

        The group checks its CSRs back to back, and each request's signature follows (batching).
        """
        body = await self._read_message(request, PKCS10, "the certificate request")
        await self.work_groups.wait_turn()
        return load_csr(body)

    async def _pake(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        """The PIN exchange: GET lists the methods offered, POST takes one message.

        A start (its CSR to check) and an enroll (a certificate to sign) take their turn in a work
        group, as the other requests that carry a CSR do; a prove is the SRP worker's and goes on.
        """
        if request.method != hdrs.METH_POST:
            return _json(offer())
        message = parse_message(
            await self._read_message(request, PAKE_MEDIA_TYPE, "the PIN exchange's messages")
        )
        if not isinstance(message, ProveRequest):
            await self.work_groups.wait_turn()
        outcome = await self.pairing.answer(message, request.remote)
        if isinstance(outcome, AwaitingOwner):
            return _enrollment_response(outcome)
        return _json(outcome)

    async def _fullcmc(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        raise OperationNotSupported("full CMC is not offered; use simpleenroll")

    async def _crl(self, request: web.BaseRequest, client_chain: ClientChain) -> web.Response:
        _check_method(request, (hdrs.METH_GET,), "the CRL is fetched with GET")
        return web.Response(body=self.registrar.crl(), headers={hdrs.CONTENT_TYPE: PKIX_CRL})


# --- request and response helpers ---------------------------------------------------------------------


def _check_method(request: web.BaseRequest, methods: tuple[str, ...], reason: str) -> None:
    """Refuse other methods than ``methods``, and HEAD wherever GET works (RFC 9110 §9.3.2).

    aiohttp sends a HEAD answer's headers (Content-Length included) and leaves its body out.
    """
    allowed = (*methods, hdrs.METH_HEAD) if hdrs.METH_GET in methods else methods
    if request.method not in allowed:
        raise MethodNotAllowed(reason, allowed)


def _peer(request: web.BaseRequest, client_chain: ClientChain) -> Peer:
    """The TLS client certificate, else the HTTP Basic credentials.

    A certificate authenticates the request by itself (§3.2.3: HTTP authentication is optional
    beside it): an Authorization header it does not need, whatever its scheme, is not read.
    """
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


async def _read_body(request: web.BaseRequest, body_timeout: float) -> bytes:
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        raise RequestTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    content = request.content
    if content.is_eof() and content.exception() is None:
        # The whole body came with the headers, as a CSR of a few hundred bytes nearly always does:
        # nothing to wait for, so no timer to set.
        body = content.read_nowait()
    else:
        body = await _receive_body(request, body_timeout)
    if len(body) > MAX_BODY_BYTES:
        raise RequestTooLarge(f"request body is over {MAX_BODY_BYTES} bytes")
    if not body:
        raise MalformedRequest("request body is empty")
    return body


async def _receive_body(request: web.BaseRequest, body_timeout: float) -> bytes:
    """The body as it arrives, within ``body_timeout``; no more of it once it is over the bound."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(body_timeout):
            while size <= MAX_BODY_BYTES and (chunk := await request.content.readany()):
                size += len(chunk)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body did not arrive within {body_timeout:g} s") from None
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
    """A refusal with its reason as a line of UTF-8.

    What UTF-8 cannot carry (a lone surrogate a request's JSON named) is escaped.
    """
    body = (_one_line(reason) + "\n").encode("utf-8", "backslashreplace")
    return web.Response(status=status, body=body, content_type="text/plain", charset="utf-8")


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

    The one place the listener reaches past aiohttp's documented API: it overrides two methods of
    ``web.RequestHandler`` (exported, not documented). aiohttp answers an unparseable request (bad
    request line, header, chunk size...) itself, before any handler runs: with a multi-line reason,
    and with a logged traceback that any device on the LAN could provoke at will; and aiohttp 3.11
    lets unparseable bytes pipelined after an upgrade request escape ``finish_response`` unanswered.

    What this buys is those answers (a one-line 400, a debug log line), not speed. What it costs,
    measured: ``handle_error`` runs for unparseable requests only; ``finish_response`` adds one
    coroutine call around aiohttp's own per request. Instructions per fresh-TLS enrollment under
    callgrind (``valgrind --tool=callgrind`` on ``scripts/est-server serve``, asyncio's loop, 200
    enrollments from ``scripts/bench``'s load generator, 8 clients, two runs each): 7.540-7.561 M
    with this handler, 7.543-7.547 M with aiohttp's own; no difference beyond the runs' spread
    (0.3%), far below what ``scripts/bench --only limits`` resolves in CPU time.

    :func:`request_handler_hooks_fit` checks that aiohttp still has the two methods as overridden
    here (a test asserts it for every aiohttp the project runs on); where it does not, the listener
    serves with aiohttp's own handler, logging that once.
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


_HOOKS: Final = (
    ("handle_error", ("self", "request", "status", "exc", "message")),
    ("finish_response", ("self", "request", "resp", "start_time")),
)


def request_handler_hooks_fit() -> bool:
    """Whether aiohttp's ``RequestHandler`` has what :class:`_EstRequestHandler` overrides and calls."""
    for name, parameters in _HOOKS:
        method = getattr(web.RequestHandler, name, None)
        if method is None or tuple(inspect.signature(method).parameters) != parameters:
            return False
    constructor = inspect.signature(web.RequestHandler).parameters
    first = next(iter(constructor.values()), None)
    return (
        first is not None
        and first.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        and "loop" in constructor
        and all(option in constructor for option in _handler_options(DEFAULT_CONNECTION_LIMITS))
    )


def _handler_options(limits: ConnectionLimits) -> dict[str, Any]:
    """The per-connection settings of aiohttp's low-level ``web.Server`` (keyword arguments).

    A dict: aiohttp releases disagree on whether access_log may be typed None. No decompression: EST
    bodies are never compressed, and a small gzip body can inflate a thousandfold. aiohttp drains an
    unread body before closing (so the client sees the refusal rather than a reset) for 10 s by
    default: a body trickling in after a 408 would hold the connection that long. No TCP keep-alive
    probes (two hours idle before the first): the guard closes an idle connection within seconds,
    and setting the option costs a system call (and on uvloop a socket object) per connection.
    """
    return {
        "access_log": None,
        "tcp_keepalive": False,
        "keepalive_timeout": limits.keepalive_timeout,
        "lingering_time": limits.linger_timeout,
        "auto_decompress": False,
    }


class EstListener:
    """Runs an :class:`EstApplication` on its own HTTPS port.

    Plain TCP is accepted on the listener's own sockets, counted and upgraded to TLS by the
    :class:`ConnectionGuard`, and handed to aiohttp's documented low-level HTTP server
    (``web.Server``), whose handler is :meth:`EstApplication.handle`.
    """

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
        application.body_timeout = limits.body_timeout
        self._host = host
        self._port = port
        self.ssl_context = ssl_context  # replacing its certificate affects new handshakes
        self._sockets: list[socket.socket] = []
        self._stop_accepting: list[Callable[[], None]] = []
        self._http: web.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        return int(self._sockets[0].getsockname()[1]) if self._sockets else self._port

    async def start(self) -> None:
        """Bind and serve. Raises OSError when the port cannot be bound."""
        loop = asyncio.get_running_loop()
        options = _handler_options(self.guard.limits)
        http = web.Server(self._handle, **options)
        factory: Callable[[], asyncio.Protocol]
        if request_handler_hooks_fit():

            def factory() -> asyncio.Protocol:
                return _EstRequestHandler(http, loop=loop, **options)

        else:
            _LOGGER.warning(
                "aiohttp %s changed its request handler: unparseable requests get aiohttp's own answers",
                aiohttp_version,
            )
            factory = http
        self._sockets = await _listening_sockets(self._host, self._port)
        self._stop_accepting = [self.guard.serve(sock, factory) for sock in self._sockets]
        self._http = http

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The handler aiohttp calls: the answer, the connection's header deadline stopped meanwhile."""
        connection = self.guard.request_started(request.transport)
        if connection is None:  # not one of the guard's: nothing to time, no client chain known
            return await self.application.handle(request)
        try:
            return await self.application.handle(request, connection.client_chain)
        finally:
            self.guard.request_finished(connection)

    async def stop(self) -> None:
        """Stop listening; let requests in progress finish (2 s at most); close every connection."""
        http, self._http = self._http, None
        stops, self._stop_accepting = self._stop_accepting, []
        sockets, self._sockets = self._sockets, []
        for stop in stops:
            stop()
        for sock in sockets:
            sock.close()
        if http is not None:
            await http.shutdown(_SHUTDOWN_TIMEOUT)
        self.guard.close()  # what aiohttp does not know yet: connections in their handshake


async def _listening_sockets(host: str | None, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (every interface for None), as asyncio binds them.

    One socket per address (IPv6 ones only for IPv6), each with SO_REUSEADDR. Raises OSError when an
    address cannot be bound, closing those bound before it.
    """
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
