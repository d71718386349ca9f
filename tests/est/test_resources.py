"""Resource abuse: stalled connections are cut off in bounded time, and floods stay bounded.

The listener runs with small limits (ConnectionLimits) so that each bound is exercised in about a
second; the production values are in limits.py and docs/reliability.md. Nothing here measures speed:
a check on elapsed time only asserts that a stalled connection was closed within its bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.limits import ConnectionLimits

from . import rawhttp
from .conftest import RunningServer, make_service

EST = "/.well-known/est"
LIMITS = ConnectionLimits(
    tls_handshake_timeout=1.0,
    header_timeout=1.0,
    body_timeout=1.0,
    keepalive_timeout=2.0,  # longer than the others, so that each cut-off below has one cause
    linger_timeout=0.2,
    max_connections=32,
)
SLACK = 1.5  # scheduling leeway on a loaded CI machine; the bounds themselves are about a second


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running server with small connection limits and ``oven`` pre-registered (PIN 123456)."""
    service = make_service(tmp_path, limits=LIMITS)
    await service.load()
    service.policy.preregister("oven", "123456")
    await service.start()
    yield RunningServer(service, tmp_path)
    await service.stop()


def tls(server: RunningServer) -> rawhttp.ssl.SSLContext:
    return rawhttp.tls_context(server.service.ca.certificate_pem)


async def trickle(connection: rawhttp.Connection, data: bytes, pause: float) -> None:
    """Send ``data`` one byte at a time, ``pause`` seconds apart, until done or the peer is gone."""
    for byte in data:
        if connection.writer.is_closing():
            return
        await connection.send(bytes([byte]))
        await asyncio.sleep(pause)


async def assert_cut_off(connection: rawhttp.Connection, bound: float) -> float:
    """The server closes the connection within ``bound`` seconds; returns how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await connection.closed_by_server(within=bound + SLACK)
    return loop.time() - start


async def assert_still_serving(server: RunningServer) -> None:
    answer = await rawhttp.exchange(
        server.service.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=tls(server)
    )
    assert answer is not None and answer.status == 200


async def test_slow_headers_are_cut_off(server: RunningServer) -> None:
    """A request line and headers trickling in byte by byte (slowloris) are cut at the header deadline."""
    request = rawhttp.http_request("GET", f"{EST}/cacerts", headers={"X-Padding": "a" * 200})
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        sender = asyncio.create_task(trickle(connection, request, pause=0.05))
        await assert_cut_off(connection, LIMITS.header_timeout)
        assert not sender.done() or connection.writer.is_closing()  # it was still sending
        sender.cancel()
    await assert_still_serving(server)


async def test_slow_body_is_cut_off_with_408(server: RunningServer) -> None:
    headers = {"Content-Type": wire.PKCS10, "Content-Length": "2000"}
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        await connection.send(rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers))
        sender = asyncio.create_task(trickle(connection, b"M" * 2000, pause=0.05))
        answer = await connection.response(within=LIMITS.body_timeout + SLACK)
        sender.cancel()
        assert answer is not None and answer.status == 408
        assert answer.is_one_line_refusal()
        assert answer.headers.get("connection") == "close"
        await assert_cut_off(connection, LIMITS.linger_timeout)
    await assert_still_serving(server)


async def test_an_idle_tls_connection_is_closed(server: RunningServer) -> None:
    """Handshake done, then silence: closed at the header deadline."""
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        await assert_cut_off(connection, LIMITS.header_timeout)
    await assert_still_serving(server)


async def test_an_idle_keep_alive_connection_is_closed(server: RunningServer) -> None:
    """After a response, a kept-alive connection that sends nothing more is closed."""
    async with rawhttp.connect(server.service.port, tls=tls(server)) as connection:
        await connection.send(rawhttp.http_request("GET", f"{EST}/cacerts"))
        answer = await connection.response()
        assert answer is not None and answer.status == 200
        assert answer.headers.get("connection") != "close"
        await assert_cut_off(connection, LIMITS.keepalive_timeout + LIMITS.header_timeout)


@pytest.mark.parametrize(
    "opening",
    [
        pytest.param(b"", id="silence"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="half a ClientHello"),
    ],
)
async def test_a_stalled_tls_handshake_is_closed(server: RunningServer, opening: bytes) -> None:
    async with rawhttp.connect(server.service.port, tls=None) as connection:
        await connection.send(opening)
        await assert_cut_off(connection, LIMITS.tls_handshake_timeout)
    await assert_still_serving(server)
