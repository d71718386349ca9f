"""Connection accounting for the listener: a cap counted from accept, TLS set up here, stall deadlines.

An event loop's own TLS server tells the application about a connection only once its handshake is
done, so a cap counted there does not bound connections stuck in their handshake: each holds a socket
and a few hundred KB of TLS buffers. The guard therefore accepts plain TCP, counts it at once, and
performs the handshake itself (``loop.start_tls``, public asyncio API that uvloop implements too)
before handing the connection to aiohttp's HTTP protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import logging
import socket
import ssl
from typing import Final, cast

from .limits import ConnectionLimits
from .lograte import OncePer
from .sessions import NO_CLIENT_CERTIFICATE, SessionChains

_LOGGER = logging.getLogger(__name__)

CAP_WARNING_INTERVAL: Final = 600.0  # seconds between warnings that the connection cap was reached
_TCP_QUICKACK: Final = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class ConnectionGuard:
    """Caps concurrent connections, from accept to close, and closes those that stall.

    A connection must finish its TLS handshake within ``tls_handshake_timeout``, then deliver its
    request headers within ``header_timeout`` (and within ``keepalive_timeout + header_timeout`` of
    its previous response): aiohttp alone waits forever for headers that trickle in byte by byte.

    At the cap, a connection closing after its last answer, with nothing left to send, is closed
    first (its peer has the answer and only owes the TLS close_notify, which a busy or careless
    client sends late or never). Then the connection that has waited longest without a request in
    progress (in its handshake, or idle between requests): a flood of idle connections cannot lock
    out an appliance that is about to send its request. Only when every connection is busy with a
    request is the newcomer turned away.
    """

    def __init__(self, limits: ConnectionLimits, ssl_context: ssl.SSLContext) -> None:
        self.limits = limits
        self.ssl_context = ssl_context
        self._open: dict[_GuardedConnection, None] = {}  # least recently busy first
        self._by_transport: dict[asyncio.BaseTransport, _GuardedConnection] = {}  # by its TLS transport
        self._handshakes: set[asyncio.Task[None]] = set()
        self._at_cap = False
        self.cap_warning = OncePer(CAP_WARNING_INTERVAL)
        self._cap_warned = False  # whether reaching the cap this time was warned about
        self.sessions = SessionChains()

    def __len__(self) -> int:
        return len(self._open)

    def wrap(self, handler_factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for a plain TCP server, around aiohttp's request handler factory."""
        return lambda: _GuardedConnection(self, handler_factory)

    def request_started(self, transport: asyncio.BaseTransport | None) -> _GuardedConnection | None:
        """A request on the connection of this TLS ``transport`` is handled: its header clock stops.

        None for a transport that is not one of the guard's connections.
        """
        connection = self._by_transport.get(transport) if transport is not None else None
        if connection is not None:
            connection.busy = True
            connection.disarm()
        return connection

    def request_finished(self, connection: _GuardedConnection) -> None:
        """The request was answered: the connection has until its next request's headers."""
        connection.busy = False
        if connection in self._open:  # still open: it moves to the end, as the most recently busy
            del self._open[connection]
            self._open[connection] = None
        connection.arm(self.limits.keepalive_timeout + self.limits.header_timeout)

    async def close(self) -> None:
        """Abort every connection and wait for handshakes in progress to give up (listener stop)."""
        for connection in list(self._open):
            connection.abort()
        if self._handshakes:
            await asyncio.wait(self._handshakes)

    def _handshake_started(self, task: asyncio.Task[None]) -> None:
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def _admit(self, connection: _GuardedConnection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            # One that has its answer loses nothing by being closed: not worth a warning.
            victim = next((c for c in self._open if c.answered), None)
            if victim is None:
                victim = next((c for c in self._open if not c.busy), None)
                if not self._at_cap:
                    self._at_cap = True
                    self._reached_cap()
                if victim is None:
                    return False
            self._release(victim)
            victim.abort()
        elif self._at_cap and len(self._open) < self.limits.max_connections // 2:
            self._at_cap = False
            level = logging.INFO if self._cap_warned else logging.DEBUG  # the end of what was warned about
            _LOGGER.log(level, "EST listener back under half its connection cap")
        self._open[connection] = None
        return True

    def _reached_cap(self) -> None:
        # Any device on the LAN can fill the cap, let the count fall and fill it again at will: a
        # warning each time would flood the log.
        self._cap_warned = self.cap_warning.due()
        cap = self.limits.max_connections
        message = f"EST listener at its {cap}-connection cap: closing idle connections to make room"
        if self._cap_warned:
            _LOGGER.warning("%s %s", message, self.cap_warning.note())
        else:
            _LOGGER.debug("%s", message)

    def _attached(self, connection: _GuardedConnection, transport: asyncio.BaseTransport) -> None:
        self._by_transport[transport] = connection

    def _release(self, connection: _GuardedConnection) -> None:
        self._open.pop(connection, None)
        if connection.handler is not None and connection._transport is not None:
            self._by_transport.pop(connection._transport, None)


class _GuardedConnection(asyncio.Protocol):
    """One accepted TCP connection: upgraded to TLS here, then delegated to aiohttp's request handler."""

    def __init__(self, guard: ConnectionGuard, handler_factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._handler_factory = handler_factory
        self.handler: asyncio.Protocol | None = None  # aiohttp's, once the handshake is done
        self.busy = False  # a request is being handled
        self._transport: asyncio.Transport | None = None  # plain TCP, then TLS
        self._tcp: asyncio.Transport | None = None  # the TCP transport under the TLS one
        self.client_chain = NO_CLIENT_CERTIFICATE
        self._early: list[bytes] = []  # decrypted before the handler was attached
        self._eof = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # --- asyncio.Protocol: first for the TCP connection, then (via start_tls) for the TLS one ---------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # a TCP server's transports are stream transports
        self._transport = self._tcp = transport
        if not self._guard._admit(self):
            self._closed = True
            transport.abort()
            return
        # Started eagerly: start_tls installs its TLS layer before this method returns. uvloop starts
        # reading once connection_made returns whatever the protocol asked (pause_reading is a no-op
        # before then): a task started later would find the ClientHello handed to this plain protocol.
        task = asyncio.Task(
            self._start_tls(transport),
            loop=asyncio.get_running_loop(),
            name="est tls handshake",
            eager_start=True,
        )
        if not task.done():
            self._guard._handshake_started(task)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)
        elif not self._closed:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        if self.handler is not None:
            return self.handler.eof_received()
        self._eof = True
        return None

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        if self.handler is not None:
            self.handler.connection_lost(exc)

    # --- the guard's side ---------------------------------------------------------------------------

    @property
    def answered(self) -> bool:
        """Closing after its answer, every byte of it handed to the kernel: aborting it loses nothing."""
        transport = self._transport
        return (
            self.handler is not None
            and not self.busy
            and transport is not None
            and transport.is_closing()
            and transport.get_write_buffer_size() == 0
            and (self._tcp is None or self._tcp.get_write_buffer_size() == 0)
        )

    def arm(self, delay: float) -> None:
        """Close the connection unless its next request starts within ``delay`` seconds."""
        self.disarm()
        if self._closed:  # lost while its request was handled: nothing left to close
            return
        self._timer = asyncio.get_running_loop().call_later(delay, self.abort)

    def disarm(self) -> None:
        """A request is being handled: no header deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        """Close at once: no TLS close_notify to wait for from a peer that stalls."""
        self.disarm()
        if self._transport is not None:
            self._transport.abort()

    async def _start_tls(self, transport: asyncio.Transport) -> None:
        if self._closed or transport.is_closing():  # evicted before the handshake began
            self._finish()
            return
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport,
                self,
                self._guard.ssl_context,
                server_side=True,
                ssl_handshake_timeout=self._guard.limits.tls_handshake_timeout,
            )
        except OSError as err:  # failed or timed out (ssl.SSLError is an OSError); the socket is closed
            _LOGGER.debug("EST listener: TLS handshake failed: %s", err)
            self._finish()
            return
        if tls is None or self._closed:  # the peer left during the handshake
            self._finish()
            return
        self._transport = tls
        _acknowledge_now(transport)
        if isinstance(ssl_object := tls.get_extra_info("ssl_object"), ssl.SSLObject):
            self.client_chain = self._guard.sessions.chain_for(ssl_object)
        handler = self.handler = self._handler_factory()
        self._guard._attached(self, tls)
        handler.connection_made(tls)
        self.arm(self._guard.limits.header_timeout)
        early, self._early = self._early, []
        for data in early:
            handler.data_received(data)
        if self._eof:
            handler.eof_received()

    def _finish(self) -> None:
        self.disarm()
        self._closed = True
        self._early.clear()
        self._guard._release(self)


def _acknowledge_now(transport: asyncio.BaseTransport) -> None:
    """Acknowledge the client's last handshake flight at once instead of up to 40 ms later.

    In TLS 1.3 the client speaks last (its Finished), and the server, sending no session tickets,
    has nothing to send back on which the acknowledgement could ride; a client with Nagle's algorithm
    on (lwIP, many embedded stacks, Python's ``ssl`` sockets) then holds its request until the
    delayed acknowledgement comes: every enrollment took 40 ms longer. Setting TCP_QUICKACK sends an
    acknowledgement that is due now (Linux only; elsewhere nothing is done).
    """
    if _TCP_QUICKACK is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the peer may have gone already
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
