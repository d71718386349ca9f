"""The load generator: its HTTP/1.1 over TLS, and a whole run in a worker process against a real listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
import functools
import operator
from typing import Any

from aiohttp import web
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames, server_ssl_context
from scripts.devtools.bench.exchanges import complete_body, http_request, parse_head
from scripts.devtools.bench.loadgen import Endpoint, LoadSpec, run_load

pytestmark = pytest.mark.slow  # load generator worker processes


def test_a_request_asks_to_close_the_connection() -> None:
    request = http_request("POST", "/e", "127.0.0.1:8443", [("Content-Type", "application/pkcs10")], b"MIIB")
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /e HTTP/1.1",
        b"Host: 127.0.0.1:8443",
        b"Content-Type: application/pkcs10",
        b"Content-Length: 4",
        b"Connection: close",
    ]
    assert body == b"MIIB"
    assert Endpoint("::1", 8443, None).authority == "[::1]:8443"


def test_parse_head() -> None:
    status, headers = parse_head(b"HTTP/1.1 202 Accepted\r\nRetry-After: 5\r\nX-Odd:a:b\r\n\r\n")
    assert status == 202
    assert headers == {"retry-after": "5", "x-odd": "a:b"}
    with pytest.raises(ValueError, match="not an HTTP"):
        parse_head(b"SSH-2.0-OpenSSH\r\n\r\n")


CHUNKED = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("headers", "data", "closed", "body"),
    [
        ({"content-length": "5"}, b"hel", False, None),
        ({"content-length": "5"}, b"hello", False, b"hello"),
        ({"content-length": "5"}, b"hello and more", False, b"hello"),
        ({"transfer-encoding": "chunked"}, CHUNKED[:12], False, None),
        ({"transfer-encoding": "chunked"}, CHUNKED[:-5], False, None),
        ({"transfer-encoding": "chunked"}, CHUNKED, False, b"hello world"),
        ({}, b"until the end", False, None),
        ({}, b"until the end", True, b"until the end"),
    ],
)
def test_a_body_is_complete_once_all_of_it_came(
    headers: dict[str, str], data: bytes, closed: bool, body: bytes | None
) -> None:
    assert complete_body(data, headers, closed=closed) == body


@pytest.fixture
async def listener(ca: HouseholdCA) -> AsyncIterator[tuple[Endpoint, list[bytes]]]:
    """A TLS listener that answers every third request with 503 and the rest with a certs-only type."""
    received: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(await request.read())
        if len(received) % 3 == 0:
            return web.Response(status=503, text="busy")
        return web.Response(body=b"certificate", content_type="application/pkcs7-mime")

    identity = ListenerIdentity.issue(ca, ListenerNames.from_hosts(["127.0.0.1"]), datetime.now(UTC))
    app = web.Application()
    app.router.add_post("/enroll", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(identity, ca.certificate))
    await site.start()
    port = runner.addresses[0][1]
    yield Endpoint("127.0.0.1", port, ca.certificate_pem.decode()), received
    await runner.cleanup()


def spec(endpoint: Endpoint, requests: int, concurrency: int, **extra: Any) -> LoadSpec:
    return LoadSpec(
        endpoint=endpoint,
        path="/enroll",
        headers=(("Content-Type", "application/pkcs10"),),
        bodies=functools.partial(operator.mul, [b"csr"]),  # picklable: count -> [b"csr"] * count
        requests=requests,
        concurrency=concurrency,
        expect_type="application/pkcs7-mime",
        **extra,
    )


async def errors_of(endpoint: Endpoint, **extra: Any) -> set[str | None]:
    run = await asyncio.to_thread(run_load, spec(endpoint, 4, 2, **extra), warmup=0.0)
    assert len(run.requests) == 4
    return {r.error for r in run.requests}


async def test_a_run_in_a_worker_process(listener: tuple[Endpoint, list[bytes]]) -> None:
    endpoint, received = listener
    started: list[bool] = []
    run = await asyncio.to_thread(
        run_load, spec(endpoint, 30, 3, keep=2), warmup=0.0, on_start=lambda: started.append(True)
    )
    assert started == [True]
    assert received == [b"csr"] * 30
    assert len(run.requests) == 30
    assert sum(r.error == "HTTP 503" for r in run.requests) == 10
    assert all(r.finished >= r.started > 0 for r in run.requests)
    assert run.kept == [(b"csr", b"certificate")] * 2
    throughput = run.throughput()
    assert throughput.completed + throughput.error_count <= 30
    assert throughput.rate > 0


async def test_failures_are_counted_not_raised(listener: tuple[Endpoint, list[bytes]]) -> None:
    endpoint, _ = listener
    stranger = HouseholdCA.create("Someone else").certificate_pem.decode()
    assert await errors_of(Endpoint(endpoint.host, endpoint.port, stranger)) == {
        "TLS CERTIFICATE_VERIFY_FAILED"
    }
    assert await errors_of(Endpoint(endpoint.host, 1, None)) == {
        "ConnectionRefusedError"
    }  # nothing on port 1


async def test_a_server_that_never_answers_times_out() -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # no TLS handshake, no answer
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    assert await errors_of(Endpoint("127.0.0.1", port, None), timeout=0.2) == {"timeout"}
    server.close()
