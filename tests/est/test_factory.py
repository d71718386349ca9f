"""Factory (manufacturer) client certificates over real TLS on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.client import build_csr
from custom_components.est_pairing.est.policy import CredentialKind
from custom_components.est_pairing.est.tls import client_ssl_context

from . import forge
from .conftest import RunningServer, make_service

EST = "/.well-known/est"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def manufacturer() -> HouseholdCA:
    """A manufacturer CA the server trusts for factory certificates."""
    return HouseholdCA.create("Acme Factory")


@pytest.fixture
async def server(tmp_path: Path, manufacturer: HouseholdCA) -> AsyncIterator[RunningServer]:
    service = make_service(tmp_path, manufacturer_cas=[manufacturer.certificate])
    await service.load()
    service.policy.retry_after = 1
    await service.start()
    yield RunningServer(service, tmp_path)
    await service.stop()


def factory_certificate(manufacturer: HouseholdCA, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return forge.issued_by(
        manufacturer, key.public_key(), common_name="SN-7", not_before=NOW - timedelta(days=1)
    )


async def post(
    server: RunningServer,
    operation: str,
    csr: x509.CertificateSigningRequest,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> tuple[int, str, bytes]:
    """POST ``csr`` to ``operation`` with ``certificate`` as the TLS client certificate."""
    context = client_ssl_context(server.service.ca.certificate, certificate=certificate, private_key=key)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.url}{EST}/{operation}",
            data=wire.encode_base64(csr.public_bytes(serialization.Encoding.DER)),
            headers={"Content-Type": wire.PKCS10},
            ssl=context,
        ) as response,
    ):
        return response.status, response.headers["Content-Type"], await response.read()


async def test_serverkeygen_with_a_factory_certificate_after_approval(
    server: RunningServer, manufacturer: HouseholdCA
) -> None:
    """The TLS connection proves the factory key: a copy of the request alone would not get here."""
    factory_key = ec.generate_private_key(ec.SECP256R1())
    factory = factory_certificate(manufacturer, factory_key)
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "SN-7")
    status, _, _ = await post(server, "serverkeygen", csr, factory, factory_key)
    assert status == 202
    (pending,) = server.service.policy.pending_requests()
    assert pending.kind is CredentialKind.FACTORY
    server.service.policy.approve(pending.request_id)
    status, content_type, body = await post(server, "serverkeygen", csr, factory, factory_key)
    assert status == 200, body
    parts = dict(wire.decode_multipart(body, content_type))
    key = serialization.load_der_private_key(parts[wire.PKCS8], password=None)
    (certificate,) = wire.decode_certs_only(parts[wire.PKCS7_MIME])
    assert certificate.public_key() == key.public_key()
