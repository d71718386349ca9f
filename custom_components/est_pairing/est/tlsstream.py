"""A TLS connection as an asyncio transport: ``ssl.SSLSocket`` driven by the event loop's readiness.

The listener's connections are short (a fresh handshake, a request or a few, the answer), and what
each costs the server is mostly their TLS. asyncio's own TLS layer (``loop.start_tls``) runs OpenSSL
over memory buffers and moves every record through Python: a 256 KiB buffer per connection and a
dozen Python calls per read. Here OpenSSL reads and writes the socket itself (``SSLSocket.recv`` and
``send`` are single C calls) and the loop only says when the socket is ready (``add_reader``,
``add_writer``: public API, on asyncio's loop and on uvloop). Served with aiohttp's handler over each
(``scripts/bench``'s bare request and load, a fresh TLS 1.3 connection per request), a prototype of
this transport cost the server a quarter less CPU than ``start_tls`` on asyncio's loop and a tenth
less on uvloop; ``scripts/bench --only limits`` shows what it does for an enrollment
(docs/performance.md).

:class:`TlsHandshake` runs the server side of a handshake on an accepted socket; :class:`TlsTransport`
then carries the connection for an ``asyncio.Protocol`` (aiohttp's request handler). Closing sends a
TLS close_notify and closes the socket without waiting for the peer's (as after ``Connection: close``,
nothing more is read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
import contextlib
import logging
import socket
import ssl
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

_READ_SIZE: Final = 65536  # bytes asked of OpenSSL per read (a TLS record holds at most 16 KiB)
_HIGH_WATER: Final = 64 * 1024  # buffered answer bytes at which the protocol is asked to pause
_LOW_WATER: Final = 16 * 1024  # ... and resumed again
_FAILED: Final = (OSError, ssl.SSLError)  # ssl.SSLError is an OSError; named for the reader


class TlsHandshake:
    """The server side of a TLS handshake on an accepted, non-blocking TCP socket.

    :meth:`start` begins it; ``done(tls)`` is called with the ``SSLSocket`` once it completes,
    ``failed(error)`` when it fails (the socket is closed by then). :meth:`abort` stops it and closes
    the socket.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        context: ssl.SSLContext,
        done: Callable[[ssl.SSLSocket], None],
        failed: Callable[[Exception | None], None],
    ) -> None:
        self._loop = loop
        self._tls: ssl.SSLSocket | None = context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        self._fd = self._tls.fileno()
        self._done = done
        self._failed = failed
        self._waiting_to_write = False

    def start(self) -> None:
        """Wait for the client's hello: each step runs when the socket is ready, in a callback of its own.

        Not at once: a listening socket's readiness accepts many connections in one callback, and
        their handshakes there would hold the event loop for all of them.
        """
        self._loop.add_reader(self._fd, self._step)

    def _step(self) -> None:
        tls = self._tls
        if tls is None:
            return
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self._want_write(False)
            return
        except ssl.SSLWantWriteError:
            self._want_write(True)
            return
        except _FAILED as err:
            self._finish()
            tls.close()
            self._failed(err)
            return
        self._finish()
        self._done(tls)

    def _want_write(self, wanted: bool) -> None:
        """Step when the socket is writable too (OpenSSL has a flight the socket did not take), or not."""
        if wanted != self._waiting_to_write:
            if wanted:
                self._loop.add_writer(self._fd, self._step)
            else:
                self._loop.remove_writer(self._fd)
            self._waiting_to_write = wanted

    def _finish(self) -> None:
        self._loop.remove_reader(self._fd)  # registered from start on
        self._want_write(False)
        self._tls = None

    def abort(self) -> None:
        """Stop the handshake and close the socket (``failed`` is not called)."""
        tls = self._tls
        if tls is not None:
            self._finish()
            tls.close()


class TlsTransport(asyncio.Transport):
    """An established TLS connection carrying ``protocol``'s bytes; see the module's description."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        tls: ssl.SSLSocket,
        protocol: asyncio.Protocol,
        on_lost: Callable[[], None] | None = None,
        *,
        peername: Any = None,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._tls = tls
        self._protocol = protocol
        self._on_lost = on_lost
        self._fd = tls.fileno()
        self._peername = peername if peername is not None else _address(tls.getpeername)
        self._buffer = bytearray()  # answer bytes OpenSSL has not taken yet
        self._reading = False
        self._read_paused = False
        self._writing = False  # a writer callback is registered
        self._write_paused = False  # the protocol was asked to pause writing
        self._closing = False
        self._aborting = False  # aborted: the end is scheduled
        self._lost = False

    def start(self) -> None:
        """Tell the protocol the connection is made, and read what the peer sent already."""
        self._protocol.connection_made(self)
        if not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)
            self._read_ready()  # OpenSSL may hold a record that came with the handshake's last flight

    # --- asyncio.Transport -----------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """What aiohttp and the guard ask: addresses, the ``SSLSocket``, its context, certificate, cipher."""
        tls = self._tls
        if name == "peername":
            return self._peername
        if name == "sockname":
            return _address(tls.getsockname) if not self._lost else default
        if name in ("ssl_object", "socket"):
            return tls
        if name == "sslcontext":
            return tls.context
        if name == "peercert":
            return tls.getpeercert() if not self._lost else default
        if name == "cipher":
            return tls.cipher() if not self._lost else default
        return default

    def is_closing(self) -> bool:
        """Whether close or abort was called, or the connection ended."""
        return self._closing

    def is_reading(self) -> bool:
        """Whether the peer's bytes are being read."""
        return self._reading and not self._read_paused

    def pause_reading(self) -> None:
        """Read nothing until :meth:`resume_reading`."""
        if self._reading and not self._read_paused:
            self._read_paused = True
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if self._reading and self._read_paused and not self._closing:
            self._read_paused = False
            self._loop.add_reader(self._fd, self._read_ready)
            self._loop.call_soon(self._read_ready)  # records OpenSSL decrypted before the pause

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (what the socket does not take now is buffered, the protocol paused past 64 KiB)."""
        if not data or self._closing:
            return  # after close: asyncio's TLS transports drop such writes too
        if self._buffer:
            self._buffer += data
        else:
            sent = self._send(data)
            if sent is None:
                return
            if sent < len(data):
                self._buffer += memoryview(data)[sent:]
                self._loop.add_writer(self._fd, self._write_ready)
                self._writing = True
        self._check_high_water()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Send the pieces as one write."""
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        """No: TLS has no half-close."""
        return False

    def write_eof(self) -> None:
        """Not supported (see :meth:`can_write_eof`)."""
        raise NotImplementedError("TLS has no half-close; close the transport")

    def get_write_buffer_size(self) -> int:
        """Bytes written and not yet taken by the socket."""
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """(low, high) water marks for pausing the protocol's writes."""
        return (_LOW_WATER, _HIGH_WATER)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Fixed limits here (the listener's answers are a few KB)."""

    def close(self) -> None:
        """Send what is buffered, then a close_notify, and close the socket."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        """Close at once: the buffer is dropped and no close_notify is sent."""
        self._force_close(None)

    # --- readiness ---------------------------------------------------------------------------------

    def _read_ready(self) -> None:
        while self._reading and not self._read_paused and not self._lost:
            try:
                data = self._tls.recv(_READ_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                # Write wanted: OpenSSL answers a key update with the next write, or the next read
                # once the socket takes data; the loop calls again when the peer sends more.
                return
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                data = b""
            except _FAILED as err:
                self._force_close(err)
                return
            if not data:
                self._stop_reading()
                if not self._protocol.eof_received():
                    self.close()
                return
            self._protocol.data_received(data)
            if not self._tls.pending():  # the rest is in the socket, which the loop watches
                return

    def _write_ready(self) -> None:
        sent = self._send(self._buffer)
        if sent is None:
            return
        del self._buffer[:sent]
        if self._buffer:
            return
        self._loop.remove_writer(self._fd)
        self._writing = False
        if self._write_paused:
            self._write_paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._finish(None)

    def _send(self, data: bytes | bytearray | memoryview) -> int | None:
        """Bytes OpenSSL took (all, or none when the socket is full); None if the connection failed."""
        try:
            return self._tls.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            return 0  # the same bytes are offered again (SSL_write's retry), with any added after
        except _FAILED as err:
            self._force_close(err)
            return None

    def _check_high_water(self) -> None:
        if len(self._buffer) > _HIGH_WATER and not self._write_paused:
            self._write_paused = True
            self._protocol.pause_writing()
        elif self._write_paused and len(self._buffer) <= _LOW_WATER:
            self._write_paused = False
            self._protocol.resume_writing()

    # --- the end -----------------------------------------------------------------------------------

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            if not self._read_paused:
                self._loop.remove_reader(self._fd)

    def _force_close(self, error: Exception | None) -> None:
        """Stop reading and writing now; the protocol hears of it at the next turn.

        As from asyncio's transports: never from inside its own call to :meth:`write` or :meth:`abort`.
        """
        if self._lost or self._aborting:
            return
        self._aborting = True
        self._closing = True
        self._buffer.clear()
        self._stop_reading()
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._loop.call_soon(self._finish, error)

    def _finish(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True  # no writer is registered by now: the buffer drained, or an abort removed it
        if not self._aborting:  # aborted, even after the close() that scheduled this: no close_notify
            # The close_notify, if the socket takes it now: after the answer nothing more is read, so
            # the peer's close_notify is not waited for.
            with contextlib.suppress(*_FAILED, ValueError):
                self._tls.unwrap()
        self._tls.close()
        on_lost, self._on_lost = self._on_lost, None  # no cycle with its owner left for the GC
        try:
            self._protocol.connection_lost(error)
        finally:
            if on_lost is not None:
                on_lost()


def _address(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except OSError:  # the peer left already
        return None
