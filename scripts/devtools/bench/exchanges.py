"""HTTP/1.1 over TLS, one request per fresh connection, many at once on one selector: the load's clients.

Non-blocking :class:`ssl.SSLSocket` objects driven by readiness events: TLS records are handled in C,
without the Python protocol layers of asyncio's TLS transport, so that a client costs little more CPU
than OpenSSL's own handshake (which, on the client side, costs about twice the server's).
"""

from __future__ import annotations

import array
from collections.abc import Callable, Sequence
import contextlib
from dataclasses import dataclass, field
import errno
import os
import selectors
import socket
import ssl
import time
from typing import cast

_HEAD_END = b"\r\n\r\n"
_CLOSE_GRACE = 5.0  # seconds a finished exchange waits for the server to close the connection
_RECEIVE = 65536


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: status, media type (lower case, no parameters) and body."""

    status: int
    media_type: str
    body: bytes


type Judge = Callable[[Answer], str | None]  # why an answer is a failure, or None


def http_request(
    method: str, path: str, authority: str, headers: Sequence[tuple[str, str]], body: bytes
) -> bytes:
    """An HTTP/1.1 request that asks the server to close the connection after answering."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status code and headers (names lower-cased) of a response head, without its empty line."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


def complete_body(data: bytes, headers: dict[str, str], *, closed: bool) -> bytes | None:
    """The body once ``data`` (what followed the head) holds all of it; None while more must come.

    By Content-Length, chunked, or (with neither) whatever came before the server closed.
    """
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunk(data)
    if (length := headers.get("content-length")) is not None:
        return data[: int(length)] if len(data) >= int(length) else None
    return data if closed else None


def _dechunk(data: bytes) -> bytes | None:
    chunks: list[bytes] = []
    position = 0
    while (line_end := data.find(b"\r\n", position)) >= 0:
        size = int(data[position:line_end].split(b";")[0], 16)
        start = line_end + 2
        if size == 0:
            return b"".join(chunks)
        if len(data) < start + size + 2:
            return None
        chunks.append(data[start : start + size])
        position = start + size + 2
    return None


@dataclass(slots=True)
class Timeline:
    """When each request started and finished (monotonic seconds) and which failed, by index."""

    starts: array.array[float]
    finishes: array.array[float]
    errors: dict[int, str] = field(default_factory=dict)
    kept: list[tuple[int, bytes]] = field(default_factory=list)  # (index, body) of some successes
    drained: float = 0.0  # when the last request was handed to a client
    drained_cpu: float = 0.0  # this process's CPU time then

    @classmethod
    def for_requests(cls, count: int) -> Timeline:
        """Zeroed, for ``count`` requests."""
        return cls(array.array("d", bytes(8 * count)), array.array("d", bytes(8 * count)))


class _Exchange:
    """One request on its own connection, advanced by readiness events."""

    __slots__ = ("body_start", "headers", "index", "out", "received", "sock", "started", "status", "step")

    def __init__(self, index: int, sock: socket.socket, request: bytes) -> None:
        self.index = index
        self.sock = sock
        self.started = time.monotonic()
        self.out = memoryview(request)
        self.received = bytearray()
        self.step = "connect"
        self.status = 0
        self.headers: dict[str, str] | None = None
        self.body_start = 0


class Clients:
    """``concurrency`` clients working through ``requests``, each exchange on a new TLS connection."""

    def __init__(
        self,
        address: tuple[str, int],
        context: ssl.SSLContext,
        requests: Sequence[bytes],
        *,
        concurrency: int,
        timeout: float,
        judge: Judge,
        keep: int,
    ) -> None:
        self._address = address
        self._context = context
        self._requests = requests
        self._concurrency = concurrency
        self._timeout = timeout
        self._judge = judge
        self._keep = keep
        self._selector = selectors.DefaultSelector()
        self._next = 0
        self._busy = 0  # exchanges not yet answered
        self._closing: dict[int, float] = {}  # fd -> when to give up waiting for the server's close
        self.timeline = Timeline.for_requests(len(requests))

    def run(self) -> Timeline:
        """Send every request; return when each is answered (or failed) and its connection closed."""
        for _ in range(min(self._concurrency, len(self._requests))):
            self._start_next()
        while self._busy or self._closing:
            for key, _ in self._selector.select(timeout=0.5):
                self._advance(key.data)
            self._expire()
        self._selector.close()
        return self.timeline

    def _start_next(self) -> None:
        if self._next >= len(self._requests):
            return
        index = self._next
        self._next += 1
        if self._next == len(self._requests):
            self.timeline.drained, self.timeline.drained_cpu = time.monotonic(), time.process_time()
        sock = socket.socket(socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET)
        sock.setblocking(False)
        exchange = _Exchange(index, sock, self._requests[index])
        self.timeline.starts[index] = exchange.started
        self._busy += 1
        code = sock.connect_ex(self._address)
        if code not in (0, errno.EINPROGRESS):
            self._fail(exchange, type(OSError(code, os.strerror(code))).__name__)
            return
        self._selector.register(sock, selectors.EVENT_WRITE, exchange)

    def _advance(self, exchange: _Exchange) -> None:
        try:
            if exchange.step == "connect":
                self._connected(exchange)
            if exchange.step == "handshake":
                cast("ssl.SSLSocket", exchange.sock).do_handshake()
                exchange.step = "send"
            if exchange.step == "send":
                self._send(exchange)
            if exchange.step == "receive":
                self._receive(exchange)
            if exchange.step == "close":
                self._drain(exchange)
        except ssl.SSLWantReadError:
            self._selector.modify(exchange.sock, selectors.EVENT_READ, exchange)
        except ssl.SSLWantWriteError:
            self._selector.modify(exchange.sock, selectors.EVENT_WRITE, exchange)
        except ssl.SSLError as err:
            self._fail(exchange, f"TLS {err.reason or err}")
        except (OSError, ValueError) as err:
            self._fail(exchange, type(err).__name__)

    def _connected(self, exchange: _Exchange) -> None:
        if code := exchange.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            raise OSError(code, os.strerror(code))
        self._selector.unregister(exchange.sock)
        exchange.sock = self._context.wrap_socket(
            exchange.sock, server_hostname=self._address[0], do_handshake_on_connect=False
        )
        self._selector.register(exchange.sock, selectors.EVENT_WRITE, exchange)
        exchange.step = "handshake"

    def _send(self, exchange: _Exchange) -> None:
        while exchange.out:
            exchange.out = exchange.out[exchange.sock.send(exchange.out) :]
        exchange.step = "receive"
        self._selector.modify(exchange.sock, selectors.EVENT_READ, exchange)

    def _receive(self, exchange: _Exchange) -> None:
        closed = self._read_available(exchange)
        if exchange.headers is None:
            head_end = exchange.received.find(_HEAD_END)
            if head_end < 0:
                if closed:
                    raise ConnectionResetError("closed before the response head")
                return
            exchange.status, exchange.headers = parse_head(bytes(exchange.received[:head_end]))
            exchange.body_start = head_end + len(_HEAD_END)
        body = complete_body(bytes(exchange.received[exchange.body_start :]), exchange.headers, closed=closed)
        if body is None:
            if closed:
                raise ConnectionResetError("closed before the whole body")
            return
        self._answered(exchange, body)
        exchange.step = "close"
        if closed:
            self._close(exchange)

    def _read_available(self, exchange: _Exchange) -> bool:
        """Read what has arrived; True once the server closed the connection."""
        while True:
            try:
                data = exchange.sock.recv(_RECEIVE)
            except ssl.SSLWantReadError:
                return False
            if not data:
                return True
            exchange.received += data

    def _answered(self, exchange: _Exchange, body: bytes) -> None:
        timeline = self.timeline
        timeline.finishes[exchange.index] = time.monotonic()
        headers = exchange.headers or {}
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        error = self._judge(Answer(exchange.status, media_type, body))
        if error is not None:
            timeline.errors[exchange.index] = error
        elif len(timeline.kept) < self._keep:
            timeline.kept.append((exchange.index, body))
        self._busy -= 1
        self._closing[exchange.sock.fileno()] = time.monotonic() + _CLOSE_GRACE
        self._start_next()

    def _drain(self, exchange: _Exchange) -> None:
        """Read until the server closes (it was asked to), so that closing sends no reset."""
        while exchange.sock.recv(_RECEIVE):
            pass
        self._close(exchange)

    def _close(self, exchange: _Exchange) -> None:
        self._closing.pop(exchange.sock.fileno(), None)
        self._selector.unregister(exchange.sock)
        exchange.sock.close()
        exchange.step = "closed"

    def _fail(self, exchange: _Exchange, error: str) -> None:
        if exchange.step == "close":  # already answered: a rough close is no failure
            self._close(exchange)
            return
        self.timeline.finishes[exchange.index] = time.monotonic()
        self.timeline.errors[exchange.index] = error
        self._busy -= 1
        with contextlib.suppress(KeyError, ValueError):  # never registered if connect failed at once
            self._selector.unregister(exchange.sock)
        exchange.sock.close()
        exchange.step = "closed"
        self._start_next()

    def _expire(self) -> None:
        now = time.monotonic()
        for key in list(self._selector.get_map().values()):
            exchange: _Exchange = key.data
            if exchange.step == "close":
                if now > self._closing.get(exchange.sock.fileno(), now):
                    self._close(exchange)
            elif now - exchange.started > self._timeout:
                self._fail(exchange, "timeout")
