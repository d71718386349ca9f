"""The listener's TLS transport on its own: flow control, and every byte before the close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from datetime import UTC, datetime
import os
import socket
import ssl
import threading

import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames, server_ssl_context
from custom_components.est_pairing.est.tlsstream import TlsHandshake, TlsTransport

from .loops import LOOPS, run_on

PAYLOAD = 8 * 1024 * 1024  # more than loopback's socket buffers hold: the transport must buffer


class Recorder(asyncio.Protocol):
    """What the transport told its protocol."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.pauses = 0
        self.resumed = asyncio.Event()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.received += data

    def pause_writing(self) -> None:
        self.pauses += 1

    def resume_writing(self) -> None:
        self.resumed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set_result(exc)


@contextlib.asynccontextmanager
async def one_connection(ca: HouseholdCA) -> AsyncIterator[tuple[int, asyncio.Future[ssl.SSLSocket]]]:
    """A listening port on loopback whose first connection is handshaken by :class:`TlsHandshake`."""
    loop = asyncio.get_running_loop()
    identity = ListenerIdentity.issue(ca, ListenerNames.from_hosts(["127.0.0.1"]), datetime.now(UTC))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    handshaken: asyncio.Future[ssl.SSLSocket] = loop.create_future()

    def accept() -> None:
        sock, _address = listener.accept()
        sock.setblocking(False)
        TlsHandshake(
            loop,
            sock,
            server_ssl_context(identity, ca.certificate),
            handshaken.set_result,
            lambda error: handshaken.set_exception(error or ConnectionError()),
        ).start()

    loop.add_reader(listener.fileno(), accept)
    try:
        yield listener.getsockname()[1], handshaken
    finally:
        loop.remove_reader(listener.fileno())
        listener.close()


async def started(handshaken: asyncio.Future[ssl.SSLSocket]) -> tuple[Recorder, TlsTransport]:
    """A transport over the handshaken connection, started, and what it tells its protocol."""
    protocol = Recorder()
    transport = TlsTransport(asyncio.get_running_loop(), await handshaken, protocol)
    transport.start()
    return protocol, transport


def client_context(ca: HouseholdCA) -> ssl.SSLContext:
    """A client that trusts the household CA."""
    return ssl.create_default_context(cadata=ca.certificate_pem.decode())


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_peer_that_does_not_read_pauses_the_writer_and_gets_every_byte_before_the_close(
    loop: str, ca: HouseholdCA
) -> None:
    run_on(loop, _unread_then_read(ca))


async def _unread_then_read(ca: HouseholdCA) -> None:
    """The peer is a blocking TLS socket in a thread: it reads nothing until told, then to the end."""
    async with one_connection(ca) as (port, handshaken):
        may_read = threading.Event()
        received = asyncio.ensure_future(asyncio.to_thread(_read_to_the_end, port, ca, may_read))
        protocol, transport = await started(handshaken)
        payload = os.urandom(PAYLOAD)
        transport.write(payload[:1000])
        transport.writelines([payload[1000:5000], payload[5000:]])
        assert protocol.pauses == 1  # the rest waits in the transport, and the protocol was asked to pause
        assert transport.get_write_buffer_size() > 0
        transport.close()  # before the peer read anything: what is buffered still goes
        assert transport.is_closing()
        transport.write(b"after the close")  # dropped, as asyncio's TLS transports drop it
        may_read.set()
        await asyncio.wait_for(protocol.resumed.wait(), 10)
        assert await asyncio.wait_for(protocol.lost, 10) is None
        assert await asyncio.wait_for(received, 10) == payload  # then the close_notify: nothing after it
        assert transport.get_write_buffer_size() == 0


def _read_to_the_end(port: int, ca: HouseholdCA, may_read: threading.Event) -> bytes:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1") as client:
        may_read.wait(10)
        data = bytearray()
        while chunk := client.recv(65536):
            data += chunk
        return bytes(data)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_what_the_peer_sends_reaches_the_protocol_and_its_end_closes(loop: str, ca: HouseholdCA) -> None:
    run_on(loop, _peer_sends_then_closes(ca))


async def _peer_sends_then_closes(ca: HouseholdCA) -> None:
    async with one_connection(ca) as (port, handshaken):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context(ca))
        protocol, transport = await started(handshaken)
        assert transport.get_extra_info("peername") == writer.get_extra_info("sockname")
        assert transport.get_extra_info("sockname") == writer.get_extra_info("peername")
        assert transport.get_extra_info("ssl_object").version() == "TLSv1.3"
        transport.pause_reading()
        writer.write(b"x" * 50_000)
        await writer.drain()
        await asyncio.sleep(0.05)
        assert not transport.is_reading()
        assert len(protocol.received) == 0  # paused: nothing read
        transport.resume_reading()
        writer.close()  # the client's close_notify and FIN
        assert await asyncio.wait_for(protocol.lost, 10) is None
        assert bytes(protocol.received) == b"x" * 50_000
        assert transport.is_closing()


@pytest.mark.parametrize("loop", list(LOOPS))
@pytest.mark.parametrize("abort", [False, True])
def test_an_abort_right_after_a_close_sends_no_close_notify(loop: str, abort: bool, ca: HouseholdCA) -> None:
    """close() ends with a close_notify; abort() in the same turn ends the connection without one."""
    run_on(loop, _close_then_maybe_abort(ca, abort=abort))


async def _close_then_maybe_abort(ca: HouseholdCA, *, abort: bool) -> None:
    async with one_connection(ca) as (port, handshaken):
        connected = threading.Event()
        ending = asyncio.ensure_future(asyncio.to_thread(_how_it_ends, port, ca, connected))
        protocol, transport = await started(handshaken)
        await asyncio.to_thread(connected.wait, 10)
        transport.write(b"answer")
        transport.close()
        if abort:
            transport.abort()
        assert await asyncio.wait_for(protocol.lost, 10) is None
        received, end = await asyncio.wait_for(ending, 10)
        assert received == b"answer"  # the socket took it before the close or the abort
        assert end == ("cut off without a close_notify" if abort else "close_notify")


def _how_it_ends(port: int, ca: HouseholdCA, connected: threading.Event) -> tuple[bytes, str]:
    """What the peer reads, and whether the server's last word was a close_notify."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    context = client_context(ca)
    with context.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as client:
        connected.set()
        data = bytearray()
        try:
            while chunk := client.recv(65536):
                data += chunk
        except ssl.SSLEOFError:
            return bytes(data), "cut off without a close_notify"
        return bytes(data), "close_notify"
