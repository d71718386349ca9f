"""Resource abuse: stalled connections are cut off in bounded time, and floods stay bounded.

The listener runs with small limits (ConnectionLimits) so that each bound is exercised in a few
seconds; the production values are in limits.py and docs/reliability.md. Nothing here measures speed:
a check on elapsed time only asserts that a stalled connection was closed by the deadline meant for
it, no sooner (the listener's timers never fire early) and no later than SLACK after it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import os
from pathlib import Path
import resource
import socket
import ssl
import time

import pytest

from custom_components.est_pairing.est import guard as listener_guard, wire
from custom_components.est_pairing.est.guard import CAP_WARNING_INTERVAL, ConnectionGuard
from custom_components.est_pairing.est.limits import (
    FREE_ATTEMPTS,
    HEADER_TIMEOUT,
    LOCKOUT_BASE,
    LOCKOUT_MAX,
    MAX_CONNECTIONS,
    TLS_HANDSHAKE_TIMEOUT,
    ConnectionLimits,
)

from . import forge, rawhttp, standalone
from .conftest import RunningServer, make_service, oven_server
from .loops import LOOPS, on_each_loop
from .polling import eventually

pytestmark = pytest.mark.slow  # thousands of real TLS connections and requests, and timeouts waited out

EST = "/.well-known/est"
SLACK = 1.5  # scheduling leeway on a loaded CI machine
# Deadlines that a cut-off could be confused with lie more than SLACK apart: a connection closed by
# the wrong one is closed too early (before its own deadline) or too late (after its deadline + SLACK).
LIMITS = ConnectionLimits(
    tls_handshake_timeout=1.0,
    header_timeout=3.0,
    body_timeout=1.0,
    keepalive_timeout=5.0,
    linger_timeout=0.2,
    max_connections=32,
)
EARLY = time.get_clock_info("monotonic").resolution  # how early the loop may run a timer (its clock's)


def limited_server(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[RunningServer]:
    """The oven's server (PIN 123456) with small connection limits."""
    return oven_server(tmp_path, limits=LIMITS)


def tls(server: RunningServer) -> ssl.SSLContext:
    return rawhttp.tls_context(server.service.ca.certificate_pem)


class Trickle:
    """Sends ``data`` one byte at a time, ``pause`` seconds apart, until done or the peer is gone."""

    def __init__(self, connection: rawhttp.Connection, data: bytes, pause: float) -> None:
        self.connection = connection
        self.data = data
        self.pause = pause
        self.sent = 0  # bytes handed to the connection so far
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        for byte in self.data:
            if self.connection.writer.is_closing():
                return
            await self.connection.send(bytes([byte]))
            self.sent += 1
            await asyncio.sleep(self.pause)  # the stall itself, not a wait for anything

    def stop(self) -> None:
        self.task.cancel()


async def assert_cut_off(
    connection: rawhttp.Connection, start: float, *, at_least: float, at_most: float
) -> None:
    """The server closes the connection without sending anything (more), no sooner than ``at_least``
    and no later than ``at_most`` + SLACK seconds after ``start`` (a ``loop.time()`` taken before
    whatever set the server's deadline: the connect, or the request)."""
    loop = asyncio.get_running_loop()
    received = b""
    try:
        async with asyncio.timeout_at(start + at_most + SLACK):
            while data := await connection.reader.read(4096):
                received += data
    except TimeoutError:
        pytest.fail(
            f"the server kept the connection open more than {at_most + SLACK} s, sent {received[:200]!r}"
        )
    except (ConnectionError, ssl.SSLError):
        pass  # reset: the listener aborts a stalled connection
    elapsed = loop.time() - start
    assert received == b"", f"the server answered instead of cutting off: {received[:200]!r}"
    assert elapsed >= at_least - EARLY, f"closed after {elapsed:.3f} s, before its {at_least} s deadline"


def guard(server: RunningServer) -> ConnectionGuard:
    """The listener's connection guard, whose per-connection state the cap tests wait for."""
    listener = server.service._listener
    assert listener is not None
    return listener.guard


def busy_count(server: RunningServer) -> int:
    """Connections whose request is being handled (the guard never closes those)."""
    return sum(connection.busy for connection in guard(server)._open)


async def assert_still_serving(server: RunningServer) -> None:
    answer = await rawhttp.exchange(
        server.service.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=tls(server)
    )
    assert answer is not None and answer.status == 200


@on_each_loop(limited_server)
async def test_slow_headers_are_cut_off(server: RunningServer) -> None:
    """A request line and headers trickling in byte by byte (slowloris) are cut at the header deadline."""
    request = rawhttp.http_request("GET", f"{EST}/cacerts", headers={"X-Padding": "a" * 200})
    start = asyncio.get_running_loop().time()
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        sender = Trickle(connection, request, pause=0.05)
        await assert_cut_off(connection, start, at_least=LIMITS.header_timeout, at_most=LIMITS.header_timeout)
        sender.stop()
        assert sender.sent < len(request)  # cut off while the request was still coming
    await assert_still_serving(server)


@on_each_loop(limited_server)
async def test_slow_body_is_cut_off_with_408(server: RunningServer) -> None:
    headers = {"Content-Type": wire.PKCS10, "Content-Length": "2000"}
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        await connection.send(rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers))
        sender = Trickle(connection, b"M" * 2000, pause=0.05)
        answer = await connection.response(within=LIMITS.body_timeout + SLACK)
        elapsed = loop.time() - start
        sender.stop()
        assert answer is not None and answer.status == 408
        assert answer.is_one_line_refusal()
        assert answer.headers.get("connection") == "close"
        assert elapsed >= LIMITS.body_timeout - EARLY, elapsed
        assert sender.sent < 2000  # refused while the body was still coming
        await assert_cut_off(connection, loop.time(), at_least=0.0, at_most=LIMITS.linger_timeout)
    await assert_still_serving(server)


@on_each_loop(limited_server)
async def test_the_end_of_each_tls_handshake_is_acknowledged_at_once(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sending no session tickets, the listener has nothing to answer a TLS 1.3 client's Finished with.

    Without an immediate acknowledgement a client with Nagle's algorithm on holds its request for the
    delayed one (40 ms on Linux). That wait is measured by ``scripts/bench`` (one client); here, that
    every connection gets TCP_QUICKACK on its own TCP socket once its handshake is done.
    """
    acknowledged: list[object] = []
    acknowledge = listener_guard._acknowledge_now

    def spy(sock: socket.socket) -> None:
        acknowledge(sock)
        acknowledged.append(sock.getpeername())  # the connection's own socket: the client's end

    monkeypatch.setattr(listener_guard, "_acknowledge_now", spy)
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        client = connection.writer.get_extra_info("sockname")
        ssl_object = connection.writer.get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.3"
        await connection.send(rawhttp.http_request("GET", "/.well-known/est/cacerts"))
        answer = await connection.response()
        assert answer is not None
        assert answer.status == 200
    assert acknowledged == [client]


@on_each_loop(limited_server)
async def test_a_closed_connection_leaves_nothing_for_the_garbage_collector(server: RunningServer) -> None:
    """Each connection's objects go when it closes: a reference cycle would hold its TLS state (OpenSSL's
    buffers) until a collection, and make collections, which stall the loop, come more often."""
    context = tls(server)
    for _ in range(3):
        assert await rawhttp.exchange(
            server.service.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=context
        )
    await eventually(lambda: len(guard(server)) == 0, "every connection gone")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(20):
            answer = await rawhttp.exchange(
                server.service.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=context
            )
            assert answer is not None and answer.status == 200
        await eventually(lambda: len(guard(server)) == 0, "every connection gone")
        gc.collect()
        left = {type(item).__name__ for item in gc.garbage} & {
            "TlsTransport",
            "TlsHandshake",
            "_GuardedConnection",
            "SSLSocket",
            "RequestHandler",
        }
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == set()


@on_each_loop(limited_server)
async def test_an_idle_tls_connection_is_closed(server: RunningServer) -> None:
    """Handshake done, then silence: closed at the header deadline."""
    start = asyncio.get_running_loop().time()
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        await assert_cut_off(connection, start, at_least=LIMITS.header_timeout, at_most=LIMITS.header_timeout)
    await assert_still_serving(server)


@on_each_loop(limited_server)
async def test_an_idle_keep_alive_connection_is_closed(server: RunningServer) -> None:
    """After a response, a kept-alive connection that sends nothing more is closed: by aiohttp at the
    keep-alive deadline, and at the latest by the guard a header deadline later."""
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        start = asyncio.get_running_loop().time()
        await connection.send(rawhttp.http_request("GET", f"{EST}/cacerts"))
        answer = await connection.response()
        assert answer is not None and answer.status == 200
        assert answer.headers.get("connection") != "close"
        await assert_cut_off(
            connection,
            start,
            at_least=LIMITS.keepalive_timeout,
            at_most=LIMITS.keepalive_timeout + LIMITS.header_timeout,
        )


@pytest.mark.parametrize(
    "opening",
    [
        pytest.param(b"", id="silence"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="half a ClientHello"),
    ],
)
@on_each_loop(limited_server)
async def test_a_stalled_tls_handshake_is_closed(server: RunningServer, opening: bytes) -> None:
    start = asyncio.get_running_loop().time()
    async with rawhttp.connect(server.service.port, tls=None) as connection:
        await connection.send(opening)
        await assert_cut_off(
            connection, start, at_least=LIMITS.tls_handshake_timeout, at_most=LIMITS.tls_handshake_timeout
        )
    await assert_still_serving(server)


# --- the connection cap ------------------------------------------------------------------------------


def small_server(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[RunningServer]:
    """Room for four connections, and deadlines long enough not to interfere."""
    return oven_server(
        tmp_path, limits=ConnectionLimits(header_timeout=30.0, body_timeout=30.0, max_connections=4)
    )


@on_each_loop(small_server)
async def test_at_the_cap_the_longest_idle_connection_makes_room(server: RunningServer) -> None:
    port, context = server.service.port, tls(server)
    async with contextlib.AsyncExitStack() as stack:
        idle = [await stack.enter_async_context(rawhttp.connect(port, tls=context)) for _ in range(4)]
        answer = await rawhttp.exchange(port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=context)
        assert answer is not None and answer.status == 200
        assert await idle[0].closed_by_server(within=SLACK)  # the one that waited longest
        for survivor in idle[1:]:
            await survivor.send(rawhttp.http_request("GET", f"{EST}/cacerts"))
            answer = await survivor.response()
            assert answer is not None and answer.status == 200


@on_each_loop(small_server)
async def test_at_the_cap_a_connection_that_was_answered_makes_room_before_one_in_its_handshake(
    server: RunningServer,
) -> None:
    """A client keeping its connection alive after an answer reconnects; one in its handshake got nothing."""
    port, context = server.service.port, tls(server)
    async with contextlib.AsyncExitStack() as stack:
        handshaking = [await stack.enter_async_context(rawhttp.connect(port, tls=None)) for _ in range(2)]
        served = [await stack.enter_async_context(rawhttp.connect(port, tls=context)) for _ in range(2)]
        for connection in served:
            await connection.send(rawhttp.http_request("GET", f"{EST}/cacerts"))
            answer = await connection.response()
            assert answer is not None and answer.status == 200
        answer = await rawhttp.exchange(port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=context)
        assert answer is not None and answer.status == 200
        assert await served[0].closed_by_server(within=SLACK)  # answered longest ago
        assert not await served[1].closed_by_server(within=0.2)
        for connection in handshaking:
            assert not await connection.closed_by_server(within=0.2)


@on_each_loop(small_server)
async def test_at_the_cap_requests_in_progress_are_never_closed(server: RunningServer) -> None:
    port, context = server.service.port, tls(server)
    headers = {"Content-Type": wire.PKCS10, "Content-Length": "8"}
    async with contextlib.AsyncExitStack() as stack:
        busy = [await stack.enter_async_context(rawhttp.connect(port, tls=context)) for _ in range(4)]
        for connection in busy:  # each request waits for the rest of its body
            await connection.send(
                rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers) + b"MA"
            )
        await eventually(lambda: busy_count(server) == 4, "four requests in progress")
        start = asyncio.get_running_loop().time()
        async with rawhttp.connect(port, tls=None) as newcomer:  # no room: turned away at once
            await assert_cut_off(newcomer, start, at_least=0.0, at_most=0.0)
        assert busy_count(server) == 4
        for connection in busy:
            await connection.send(b"AAAAAA")
            answer = await connection.response()
            assert answer is not None and answer.status == 400  # "MAAAAAAA" is no CSR, but was answered


def answered_and_left_open(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    """A blocking TLS client that reads one answer (``Connection: close``) and then neither reads
    nor closes: the server's close_notify goes unanswered."""
    client = context.wrap_socket(socket.create_connection((rawhttp.HOST, port)), server_hostname=rawhttp.HOST)
    client.settimeout(10)
    client.sendall(rawhttp.http_request("GET", f"{EST}/cacerts", headers={"Connection": "close"}))
    received = b""
    while b"\r\n\r\n" not in received:
        received += client.recv(4096)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[
            1
        ]
    )
    while len(body) < length:
        body += client.recv(4096)
    return client


@on_each_loop(small_server)
async def test_a_connection_that_got_its_last_answer_holds_no_place_at_the_cap(
    server: RunningServer,
) -> None:
    """A client busy with the answer it got (``Connection: close``) that neither reads nor closes does
    not keep its connection at the server: it sent its close_notify and closed, so at the cap the
    connections waiting for their handshake are not the ones that make room."""
    port, context = server.service.port, tls(server)
    async with contextlib.AsyncExitStack() as stack:
        handshaking = [await stack.enter_async_context(rawhttp.connect(port, tls=None)) for _ in range(2)]
        answered = [await asyncio.to_thread(answered_and_left_open, port, context) for _ in range(2)]
        for client in answered:
            stack.callback(client.close)
            client.settimeout(5)
            assert client.recv(4096) == b""  # the server's close_notify, then its end of the connection
        await eventually(lambda: len(guard(server)) == 2, "only the two in their handshake counted")
        assert server_sockets(os.getpid(), port) == 2
        for _ in range(2):  # the cap (4) has room for both without closing anything
            answer = await rawhttp.exchange(port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=context)
            assert answer is not None and answer.status == 200
        for connection in handshaking:
            assert not await connection.closed_by_server(within=0.2)


@on_each_loop(small_server)
async def test_a_swinging_connection_count_is_warned_about_once_per_interval(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Any device on the LAN can fill the cap, let the count fall and fill it again at will: that
    must not write a warning each time (66 connects and one more wrote 154 warnings in 5 s). One
    warning per interval, then one saying how many times it was reached meanwhile."""
    caplog.set_level(logging.DEBUG, logger="custom_components.est_pairing.est")
    port, cap = server.service.port, guard(server).limits.max_connections
    now = 1000.0
    guard(server).cap_warning.clock = lambda: now

    def reached() -> int:
        return sum("connection cap:" in r.getMessage() for r in caplog.records)

    async def fill_then_leave(times: int) -> list[str]:
        """Reach the cap (silent TCP connects, one more than it holds) and leave, ``times`` times."""
        caplog.clear()
        for time_ in range(times):
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(cap + 1):
                    await stack.enter_async_context(rawhttp.connect(port, tls=None))
                await eventually(lambda: reached() == time_ + 1, "the cap reached")  # noqa: B023
            await eventually(lambda: len(guard(server)) == 0, "every connection gone")
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.INFO and "EST listener" in r.getMessage()
        ]

    assert await fill_then_leave(10) == [
        f"EST listener at its {cap}-connection cap: closing idle connections to make room"
        " (the next ones are logged at debug level for 600 s)",
        "EST listener back under half its connection cap",
    ]
    now += CAP_WARNING_INTERVAL
    assert await fill_then_leave(2) == [
        f"EST listener at its {cap}-connection cap: closing idle connections to make room"
        " (9 more since the last warning; the next ones are logged at debug level for 600 s)",
        "EST listener back under half its connection cap",
    ]


def server_sockets(pid: int, port: int) -> int:
    """Sockets process ``pid`` holds for connections to its port ``port`` (the listening one excluded)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
        if local_port == port and state != "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{inode}]")
    fds = Path(f"/proc/{pid}/fd")
    held = 0
    for fd in fds.iterdir():
        with contextlib.suppress(FileNotFoundError):
            held += str(fd.readlink()) in inodes
    return held


def resident_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


async def open_flood(
    port: int, count: int, ca_pem: bytes
) -> tuple[contextlib.AsyncExitStack, list[rawhttp.Connection | None]]:
    """``count`` concurrent connections of four kinds that all stall: silent TCP, half a ClientHello,
    TLS then silence, TLS then half a request line. A connection the server refuses or closes during
    its handshake is None."""
    context = rawhttp.tls_context(ca_pem)
    stack = contextlib.AsyncExitStack()

    async def one(kind: int) -> rawhttp.Connection | None:
        try:
            connection = await stack.enter_async_context(
                rawhttp.connect(port, tls=context if kind >= 2 else None)
            )
        except (OSError, TimeoutError):
            return None
        opening = [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"", b"GET /.well-kn"][kind]
        await connection.send(opening)
        return connection

    return stack, list(await asyncio.gather(*(one(i % 4) for i in range(count))))


@pytest.mark.parametrize("event_loop_kind", list(LOOPS))
async def test_a_thousand_connections_stay_within_the_cap(tmp_path: Path, event_loop_kind: str) -> None:
    """The standalone server, production limits, on each loop it runs on: sockets stay at the cap,
    memory stays bounded, and an appliance that connects in the middle of the flood is served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip("needs 2048 file descriptors for the test's own side of the flood")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    serving = await standalone.start(tmp_path, "--loop", event_loop_kind)
    try:
        ca_pem = (tmp_path / "ca.pem").read_bytes()
        before = resident_mb(serving.pid)
        stack, flood = await open_flood(serving.port, 1000, ca_pem)
        async with stack:
            # The server may still be accepting from its backlog (and evicting as it goes). Waiting is
            # bounded by half the production stall deadlines: a connection opened in the flood's last
            # few seconds cannot have timed out yet, so only the cap can bring the count down.
            await eventually(
                lambda: server_sockets(serving.pid, serving.port) <= MAX_CONNECTIONS,
                f"the server holds at most {MAX_CONNECTIONS} sockets",
                within=min(TLS_HANDSHAKE_TIMEOUT, HEADER_TIMEOUT) / 2,
            )
            answer = await rawhttp.exchange(
                serving.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=rawhttp.tls_context(ca_pem)
            )
            assert answer is not None and answer.status == 200
            assert server_sockets(serving.pid, serving.port) <= MAX_CONNECTIONS
            assert resident_mb(serving.pid) - before < 64  # measured: about 25 MB at a cap of 64
        answer = await rawhttp.exchange(
            serving.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=rawhttp.tls_context(ca_pem)
        )
        assert answer is not None and answer.status == 200
        assert sum(connection is not None for connection in flood) > MAX_CONNECTIONS  # over the cap
    finally:
        await serving.stop()


# --- wrong secrets -------------------------------------------------------------------------------------


class SteppingClock:
    """The service's clock: real time plus whatever the test skips ahead."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped


def most_guesses(duration: float) -> int:
    """What the lockout policy allows in ``duration`` seconds: the free attempts, then one guess per
    lockout window, each window twice the last, up to LOCKOUT_MAX."""
    guesses, elapsed, window = FREE_ATTEMPTS, 0.0, LOCKOUT_BASE
    while elapsed + window <= duration:
        elapsed += window
        guesses += 1
        window = min(window * 2, LOCKOUT_MAX)
    return guesses


async def test_ten_thousand_wrong_pins(tmp_path: Path) -> None:
    """10,000 wrong PINs, one simulated second apart (2.8 hours of hammering): the PIN is actually
    checked only as often as the lockout policy allows, every other attempt gets 429, nothing is
    issued, other appliances enroll meanwhile, and the right PIN works once the window has passed."""
    clock = SteppingClock()
    service = make_service(tmp_path, clock=clock)
    await service.load()
    await service.policy.preregister("oven", "123456")
    neighbours = [f"fridge-{number}" for number in range(8 * 5)]
    for neighbour in neighbours:  # each enrolls once (a pre-registration is used once)
        await service.policy.preregister(neighbour, "424242")
    await service.start()
    context = rawhttp.tls_context(service.ca.certificate_pem)
    oven_body = forge.body(forge.build(forge.new_key(), "oven"))
    statuses: collections.Counter[int] = collections.Counter()

    def enroll(body: bytes, user: str, pin: str) -> bytes:
        headers = {"Content-Type": wire.PKCS10, "Authorization": wire.basic_authorization(user, pin)}
        return rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers, body=body)

    async def attacker(first: int, batches: int) -> None:
        """Pipelined batches of wrong PINs on one connection; the clock moves one second per attempt."""
        async with rawhttp.connect(service.port, tls=context) as connection:
            for batch in range(batches):
                pins = [f"{(first + batch * 50 + i) % 999_999 + 1:06d}" for i in range(50)]
                await connection.send(b"".join(enroll(oven_body, "oven", pin) for pin in pins))
                for _ in pins:
                    clock.skipped += 1.0
                    answer = await connection.response()
                    assert answer is not None
                    statuses[answer.status] += 1
                if batch % 5 == 0:  # a neighbour enrolls meanwhile
                    neighbour = neighbours.pop()
                    fridge = forge.body(forge.build(forge.new_key(), neighbour))
                    await connection.send(enroll(fridge, neighbour, "424242"))
                    answer = await connection.response()
                    assert answer is not None and answer.status == 200

    try:
        await asyncio.gather(*(attacker(first, batches=25) for first in range(0, 10_000, 1_250)))
        assert statuses.total() == 10_000
        assert set(statuses) <= {401, 429}, statuses
        assert statuses[401] <= most_guesses(clock.skipped), statuses
        assert service.policy.locked("id:oven")
        assert service.ledger.for_appliance("oven") == []
        assert neighbours == []
        assert len(service.ledger) == 8 * 5

        clock.skipped += LOCKOUT_MAX
        answer = await rawhttp.exchange(service.port, enroll(oven_body, "oven", "123456"), tls=context)
        assert answer is not None and answer.status == 200
        assert len(service.ledger.for_appliance("oven")) == 1
    finally:
        await service.stop()
