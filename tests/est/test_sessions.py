"""Client certificates on resumed TLS sessions, and factory chains whose manufacturer CA expired.

Real TLS on 127.0.0.1 with blocking `ssl` sockets (in a thread), because only they let a client offer
a saved session. OpenSSL reports no verified chain on a resumed session; the listener sends no session
tickets (so TLS 1.3 never resumes) and remembers the chain of each TLS 1.2 session it began.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
import socket
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est import sessions, wire
from custom_components.est_pairing.est.ca import IssuedName
from custom_components.est_pairing.est.policy import CredentialKind
from custom_components.est_pairing.est.tls import server_ssl_context
from est_tools.appliance.client import build_csr, client_ssl_context, renewal_csr

from .conftest import RunningServer, make_service, oven_server
from .loops import on_each_loop
from .manufacturer import LATER, NOW, Manufacturer

EST = "/.well-known/est"


@dataclass(frozen=True, slots=True)
class Exchange:
    status: int
    body: bytes
    session: ssl.SSLSession | None
    resumed: bool
    reason: bytes  # the status line's reason phrase


def _post_blocking(
    port: int,
    operation: str,
    der: bytes,
    context: ssl.SSLContext,
    session: ssl.SSLSession | None,
    auth: str | None,
) -> Exchange:
    body = wire.encode_base64(der)
    head = f"POST {EST}/{operation} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {wire.PKCS10}\r\n"
    if auth is not None:
        head += f"Authorization: {auth}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
    ):
        tls.sendall(head.encode() + body)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        resumed, saved = bool(tls.session_reused), tls.session
    status_line, _, rest = answer.partition(b"\r\n")
    _, status, reason = status_line.split(maxsplit=2)
    return Exchange(int(status), rest.partition(b"\r\n\r\n")[2], saved, resumed, reason)


async def post(
    server: RunningServer,
    operation: str,
    csr: x509.CertificateSigningRequest,
    context: ssl.SSLContext,
    session: ssl.SSLSession | None = None,
    auth: str | None = None,
) -> Exchange:
    der = csr.public_bytes(serialization.Encoding.DER)
    return await asyncio.to_thread(
        _post_blocking, server.service.port, operation, der, context, session, auth
    )


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def tls12(context: ssl.SSLContext) -> ssl.SSLContext:
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


ACME = Manufacturer.make(root_expires=LATER, intermediate_expires=LATER)


@pytest.fixture
def acme() -> Manufacturer:
    return ACME


def served(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[RunningServer]:
    """The oven's server, trusting ACME's factory certificates."""
    return oven_server(tmp_path, manufacturer_cas=[ACME.root])


async def enrolled_oven(server: RunningServer) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    oven_key = key()
    answer = await post(
        server,
        "simpleenroll",
        build_csr(oven_key, "oven"),
        client_ssl_context(server.service.ca.certificate),
        auth="Basic b3ZlbjoxMjM0NTY=",  # oven:123456
    )
    assert answer.status == 200, answer.body
    (certificate,) = wire.decode_certs_only(answer.body)
    return certificate, oven_key


@on_each_loop(served)
async def test_renewal_over_a_resumed_tls12_session(server: RunningServer) -> None:
    """Clients that cache TLS 1.2 sessions (JSSE, Go with a cache) resume them when they renew."""
    certificate, oven_key = await enrolled_oven(server)
    context = tls12(
        client_ssl_context(server.service.ca.certificate, certificate=certificate, private_key=oven_key)
    )
    first = await post(server, "simplereenroll", renewal_csr(oven_key, certificate), context)
    assert (first.status, first.resumed) == (200, False), first.body
    again = await post(server, "simplereenroll", renewal_csr(oven_key, certificate), context, first.session)
    assert again.resumed
    assert again.status == 200, again.body
    (renewed,) = wire.decode_certs_only(again.body)
    assert renewed.public_key() == oven_key.public_key()


@on_each_loop(served)
async def test_tls13_sessions_are_not_resumed(server: RunningServer) -> None:
    """No session tickets: a TLS 1.3 client always makes a full handshake, its certificate verified."""
    certificate, oven_key = await enrolled_oven(server)
    context = client_ssl_context(server.service.ca.certificate, certificate=certificate, private_key=oven_key)
    first = await post(server, "simplereenroll", renewal_csr(oven_key, certificate), context)
    again = await post(server, "simplereenroll", renewal_csr(oven_key, certificate), context, first.session)
    assert (first.status, again.status, again.resumed) == (200, 200, False)


@on_each_loop(served)
async def test_a_factory_retry_over_a_resumed_session_completes(
    server: RunningServer, acme: Manufacturer, tmp_path: Path
) -> None:
    context = tls12(acme.context(server, tmp_path))
    csr = build_csr(key(), "SN-7")
    asked = await post(server, "simpleenroll", csr, context)
    assert asked.status == 202, asked.body
    (pending,) = server.service.policy.pending_requests()
    assert pending.kind is CredentialKind.FACTORY
    await server.service.policy.approve(pending.request_id)
    retry = await post(server, "simpleenroll", csr, context, asked.session)
    assert retry.resumed
    assert retry.status == 200, retry.body


@on_each_loop(served)
async def test_a_resumed_session_whose_chain_was_forgotten(
    server: RunningServer, acme: Manufacturer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only so many chains are kept: renewal still works (the leaf is enough), a factory claim asks again."""
    monkeypatch.setattr(sessions, "MAX_REMEMBERED_SESSIONS", 1)
    await server.service.stop()
    await server.service.start()  # a listener that keeps one chain
    certificate, oven_key = await enrolled_oven(server)
    factory_context = tls12(acme.context(server, tmp_path))
    oven_context = tls12(
        client_ssl_context(server.service.ca.certificate, certificate=certificate, private_key=oven_key)
    )
    csr = build_csr(key(), "SN-7")
    factory = await post(server, "simpleenroll", csr, factory_context)
    renewal = await post(server, "simplereenroll", renewal_csr(oven_key, certificate), oven_context)
    assert (factory.status, renewal.status) == (202, 200)  # the oven's chain pushed the factory's out

    factory_again = await post(server, "simpleenroll", csr, factory_context, factory.session)
    assert factory_again.resumed
    assert factory_again.status == 401
    assert b"connect again with a full handshake" in factory_again.reason
    assert len(server.service.policy.pending_requests()) == 1

    renewal_again = await post(
        server, "simplereenroll", renewal_csr(oven_key, certificate), oven_context, renewal.session
    )
    assert (renewal_again.resumed, renewal_again.status) == (True, 200)


@pytest.mark.parametrize(("expired", "status"), [(None, 202), ("intermediate", 403), ("root", 403)], ids=str)
async def test_a_factory_chain_under_an_expired_manufacturer_ca(
    tmp_path: Path, expired: str | None, status: int
) -> None:
    """TLS leaves the dates to the EST layer, which checks every certificate of the chain."""
    yesterday = NOW - timedelta(days=1)
    acme = Manufacturer.make(
        root_expires=yesterday if expired == "root" else LATER,
        intermediate_expires=yesterday if expired == "intermediate" else LATER,
    )
    service = make_service(tmp_path, manufacturer_cas=[acme.root])
    await service.load()
    await service.start()
    try:
        server = RunningServer(service, tmp_path)
        answer = await post(server, "simpleenroll", build_csr(key(), "SN-7"), acme.context(server, tmp_path))
        assert answer.status == status, answer.body
        if expired is not None:
            assert answer.body == b"a manufacturer CA above the factory certificate is not valid now\n"
            assert service.policy.pending_requests() == []
    finally:
        await service.stop()


def _resident_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow  # thousands of real TLS handshakes, memory measured around them
def test_a_tls13_client_certificate_costs_no_memory_once_its_connection_ends(
    server: RunningServer,
) -> None:
    """Reading a connection's ``session`` leaked a copy of it in CPython before 3.13.1 (gh-116810).

    Real handshakes in memory, through the listener's own TLS context: 3,000 renewal-style TLS 1.3
    connections presenting a client certificate would have kept about 16 MB.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    holder = server.service.ca.issue_appliance_certificate(
        public_key=key.public_key(),
        name=IssuedName("oven"),
        server_auth=False,
        serial_number=x509.random_serial_number(),
        not_before=NOW,
        not_after=LATER,
        crl_url=None,
    )
    client_context = client_ssl_context(server.service.ca.certificate, certificate=holder, private_key=key)
    chains = sessions.SessionChains()
    listener_context = server_ssl_context(server.service.listener_identity, server.service.ca.certificate)

    def handshake() -> None:
        to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_context.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")
        listener = listener_context.wrap_bio(to_server, to_client, server_side=True)
        for _ in range(10):
            for end in (client, listener):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
        assert listener.version() == "TLSv1.3"
        assert chains.chain_for(listener).certificates[0] == holder.public_bytes(serialization.Encoding.DER)

    for _ in range(300):  # allocator warm-up
        handshake()
    before = _resident_kib()
    for _ in range(3000):
        handshake()
    assert _resident_kib() - before < 6 * 1024
