"""Factory (manufacturer) client certificates over real TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
import logging
from pathlib import Path
import ssl

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.policy import CredentialKind
from est_tools.appliance.client import build_csr, client_ssl_context

from . import forge
from .conftest import RunningServer, make_service

EST = "/.well-known/est"
NOW = datetime.now(UTC)

# A PrintableString holding byte 0x80: OpenSSL verifies the certificate, cryptography cannot read it.
UNDECODABLE_COMMON_NAME = b"\x13\x04S\x80-7"


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
    return await post_over(server, operation, csr, context)


async def post_over(
    server: RunningServer, operation: str, csr: x509.CertificateSigningRequest, context: ssl.SSLContext
) -> tuple[int, str, bytes]:
    """POST ``csr`` to ``operation`` over a TLS connection made with ``context``."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.url}{EST}/{operation}",
            data=wire.encode_base64(csr.public_bytes(serialization.Encoding.DER)),
            headers={"Content-Type": wire.PKCS10},
            ssl=context,
        ) as response,
    ):
        return response.status, response.headers.get("Content-Type", ""), await response.read()


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
    await server.service.policy.approve(pending.request_id)
    status, content_type, body = await post(server, "serverkeygen", csr, factory, factory_key)
    assert status == 200, body
    parts = dict(wire.decode_multipart(body, content_type))
    key = serialization.load_der_private_key(parts[wire.PKCS8], password=None)
    (certificate,) = wire.decode_certs_only(parts[wire.PKCS7_MIME])
    assert certificate.public_key() == key.public_key()


def cryptography_refuses(der: bytes) -> bool:
    """Whether cryptography fails on the certificate: at load, or when its subject is read."""
    try:
        _ = x509.load_der_x509_certificate(der).subject
    except ValueError:
        return True
    return False


FORGERIES = {
    # Newer cryptography refuses this one at load, older ones when the subject is read.
    "subject cryptography cannot read": lambda certificate, key: forge.with_subject_common_name_der(
        certificate, key, UNDECODABLE_COMMON_NAME
    ),
    "serial number length in long form": forge.with_long_form_serial_length,
}


@pytest.mark.parametrize("operation", ["simpleenroll", "serverkeygen"])
@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_a_factory_certificate_cryptography_cannot_read_is_a_400(
    server: RunningServer,
    manufacturer: HouseholdCA,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    forgery: str,
    operation: str,
) -> None:
    factory_key = ec.generate_private_key(ec.SECP256R1())
    manufacturer_key = serialization.load_pem_private_key(manufacturer.to_pem()[1], password=None)
    assert isinstance(manufacturer_key, ec.EllipticCurvePrivateKey)
    der = FORGERIES[forgery](factory_certificate(manufacturer, factory_key), manufacturer_key)
    assert cryptography_refuses(der)
    # The ssl module loads client certificates from files only.
    (tmp_path / "factory.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    (tmp_path / "manufacturer.pem").write_bytes(manufacturer.certificate_pem)
    openssl = await asyncio.create_subprocess_exec(
        "openssl",
        "verify",
        "-CAfile",
        tmp_path / "manufacturer.pem",
        tmp_path / "factory.pem",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await openssl.communicate()
    assert openssl.returncode == 0, output  # OpenSSL takes it for a valid factory certificate
    (tmp_path / "factory.key").write_bytes(
        factory_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = client_ssl_context(server.service.ca.certificate)
    context.load_cert_chain(tmp_path / "factory.pem", tmp_path / "factory.key")
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "SN-7")
    with caplog.at_level(logging.DEBUG, logger="custom_components.est_pairing.est"):
        status, content_type, body = await post_over(server, operation, csr, context)
    assert (status, body) == (400, b"client certificate cannot be decoded\n")
    assert content_type.startswith("text/plain")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert server.service.policy.pending_requests() == []
    assert len(server.service.ledger) == 0
