"""Connection accounting for the listener: a cap counted from accept, TLS set up here, stall deadlines.

An event loop's own TLS server tells the application about a connection only once its handshake is
done, so a cap counted there does not bound connections stuck in their handshake: each holds a socket
and TLS buffers. The guard therefore accepts plain TCP on the listening sockets (the loop's
``add_reader``, public API that uvloop implements too), counts each connection at once, and performs
the handshake itself before handing the connection, over a :class:`~.tlsstream.TlsTransport`, to
aiohttp's HTTP protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import errno
import logging
import socket
import ssl
from typing import Any, Final

from .limits import ConnectionLimits
from .lograte import OncePer
from .sessions import NO_CLIENT_CERTIFICATE, SessionChains
from .tlsstream import TlsHandshake, TlsTransport

_LOGGER = logging.getLogger(__name__)

CAP_WARNING_INTERVAL: Final = 600.0  # seconds between warnings that the connection cap was reached
_TCP_QUICKACK: Final = getattr(socket, "TCP_QUICKACK", None)  # Linux only
_ACCEPT_BATCH: Final = 64  # connections accepted per readiness of a listening socket, at most
# Out of descriptors or memory: accepting again at once would spin; asyncio's servers wait a second.
_ACCEPT_BACKOFF: Final = 1.0
_OUT_OF_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ConnectionGuard:
    """Caps concurrent connections, from accept to close, and closes those that stall.

    A connection must finish its TLS handshake within ``tls_handshake_timeout``, then deliver its
    request headers within ``header_timeout`` (and within ``keepalive_timeout + header_timeout`` of
    its previous response): aiohttp alone waits forever for headers that trickle in byte by byte.

    A connection that has sent its last answer closes (its close_notify sent, the peer's not waited
    for). At the cap, one closing that way is closed first (its peer has its answer), then one idle
    after an answer (a client that keeps connections alive reconnects), then the one that has waited
    longest in its handshake: a flood of idle connections cannot lock out an appliance that is about
    to send its request. Only when every connection is busy with a request is the newcomer turned
    away.
    """

    def __init__(self, limits: ConnectionLimits, ssl_context: ssl.SSLContext) -> None:
        self.limits = limits
        self.ssl_context = ssl_context
        self._open: dict[_GuardedConnection, None] = {}  # least recently busy first
        self._by_transport: dict[asyncio.BaseTransport, _GuardedConnection] = {}  # by its TLS transport
        self._at_cap = False
        self.cap_warning = OncePer(CAP_WARNING_INTERVAL)
        self._cap_warned = False  # whether reaching the cap this time was warned about
        self.sessions = SessionChains()

    def __len__(self) -> int:
        return len(self._open)

    def serve(
        self, listener: socket.socket, handler_factory: Callable[[], asyncio.Protocol]
    ) -> Callable[[], None]:
        """Accept on a listening, non-blocking socket; returns what stops accepting there."""
        loop = asyncio.get_running_loop()
        fd = listener.fileno()
        resume: asyncio.TimerHandle | None = None

        def accept() -> None:
            nonlocal resume
            for _ in range(_ACCEPT_BATCH):
                try:
                    sock, address = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    return
                except OSError as err:
                    if err.errno not in _OUT_OF_RESOURCES:
                        raise
                    _LOGGER.warning("EST listener cannot accept connections for now: %s", err)
                    loop.remove_reader(fd)
                    resume = loop.call_later(_ACCEPT_BACKOFF, loop.add_reader, fd, accept)
                    return
                _GuardedConnection(self, loop, sock, address, handler_factory).start()

        def stop() -> None:
            if resume is not None:
                resume.cancel()
            loop.remove_reader(fd)

        loop.add_reader(fd, accept)
        return stop

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
        connection.served = True
        if connection in self._open:  # still open: it moves to the end, as the most recently busy
            del self._open[connection]
            self._open[connection] = None
        connection.arm(self.limits.keepalive_timeout + self.limits.header_timeout)

    def close(self) -> None:
        """Abort every connection, those in their handshake included (the listener stops)."""
        for connection in list(self._open):
            connection.abort()

    def _admit(self, connection: _GuardedConnection) -> bool:
        if len(self._open) >= self.limits.max_connections:
            victim = self._victim()
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

    def _victim(self) -> _GuardedConnection | None:
        """The connection that makes room at the cap (see the class's description), if any may."""
        idle = [connection for connection in self._open if not connection.busy]  # oldest first
        return (
            next((connection for connection in idle if connection.closing), None)
            or next((connection for connection in idle if connection.served), None)
            or next(iter(idle), None)
        )

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
        if connection.transport is not None:
            self._by_transport.pop(connection.transport, None)


class _GuardedConnection:
    """One accepted TCP connection: its TLS handshake, then its transport to aiohttp's request handler."""

    def __init__(
        self,
        guard: ConnectionGuard,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        address: Any,
        handler_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._guard = guard
        self._loop = loop
        self._sock = sock
        self._address = address  # the peer's, as accept gave it
        self._handler_factory = handler_factory
        self._handshake: TlsHandshake | None = None
        self.transport: TlsTransport | None = None  # once the handshake is done
        self.busy = False  # a request is being handled
        self.served = False  # a request was answered
        self.client_chain = NO_CLIENT_CERTIFICATE
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        """Count the connection (or turn it away at the cap) and begin its handshake."""
        if not self._guard._admit(self):
            self._closed = True
            self._sock.close()
            return
        try:
            self._sock.setblocking(False)  # aiohttp's protocol sets TCP_NODELAY once it is connected
            handshake = self._handshake = TlsHandshake(
                self._loop, self._sock, self._guard.ssl_context, self._handshake_done, self._handshake_failed
            )
        except OSError as err:  # the peer left already
            _LOGGER.debug("EST listener: connection lost before its TLS handshake: %s", err)
            self._sock.close()
            self._finish()
            return
        self.arm(self._guard.limits.tls_handshake_timeout)
        handshake.start()

    # --- the guard's side ---------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Closing after its last answer (nothing more is read): aborting it loses nothing once sent."""
        transport = self.transport
        return transport is not None and transport.is_closing() and not transport.get_write_buffer_size()

    def arm(self, delay: float) -> None:
        """Close the connection unless its next request starts within ``delay`` seconds."""
        self.disarm()
        if self._closed:  # lost while its request was handled: nothing left to close
            return
        self._timer = self._loop.call_later(delay, self.abort)

    def disarm(self) -> None:
        """A request is being handled: no header deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        """Close at once: no TLS close_notify to wait for from a peer that stalls."""
        self.disarm()
        if self._handshake is not None:
            self._handshake.abort()
            self._handshake = None
            self._finish()
        elif self.transport is not None:
            self.transport.abort()  # its end calls _finish

    def _handshake_failed(self, error: Exception | None) -> None:
        _LOGGER.debug("EST listener: TLS handshake failed: %s", error)
        self._handshake = None
        self._finish()

    def _handshake_done(self, tls: ssl.SSLSocket) -> None:
        self._handshake = None
        _acknowledge_now(tls)
        self.client_chain = self._guard.sessions.chain_for(tls)
        transport = self.transport = TlsTransport(
            self._loop, tls, self._handler_factory(), self._finish, peername=self._address
        )
        self._guard._attached(self, transport)
        self.arm(self._guard.limits.header_timeout)
        transport.start()

    def _finish(self) -> None:
        self.disarm()
        self._closed = True
        self._guard._release(self)


def _acknowledge_now(sock: socket.socket) -> None:
    """Acknowledge the client's last handshake flight at once instead of up to 40 ms later.

    In TLS 1.3 the client speaks last (its Finished), and the server, sending no session tickets,
    has nothing to send back on which the acknowledgement could ride; a client with Nagle's algorithm
    on (lwIP, many embedded stacks, Python's ``ssl`` sockets) then holds its request until the
    delayed acknowledgement comes: every enrollment took 40 ms longer. Setting TCP_QUICKACK sends an
    acknowledgement that is due now (Linux only; elsewhere nothing is done).
    """
    if _TCP_QUICKACK is None:
        return
    with contextlib.suppress(OSError):  # the peer may have gone already
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
