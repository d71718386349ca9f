"""Factory (manufacturer) client certificates over real TLS on 127.0.0.1."""

from __future__ import annotations

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
from custom_components.est_pairing.est.client import build_csr
from custom_components.est_pairing.est.policy import CredentialKind
from custom_components.est_pairing.est.tls import client_ssl_context

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


@pytest.mark.parametrize("operation", ["simpleenroll", "serverkeygen"])
async def test_a_factory_certificate_cryptography_cannot_decode_is_a_400(
    server: RunningServer, manufacturer: HouseholdCA, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    factory_key = ec.generate_private_key(ec.SECP256R1())
    manufacturer_key = serialization.load_pem_private_key(manufacturer.to_pem()[1], password=None)
    assert isinstance(manufacturer_key, ec.EllipticCurvePrivateKey)
    undecodable = forge.with_subject_common_name_der(
        factory_certificate(manufacturer, factory_key), manufacturer_key, UNDECODABLE_COMMON_NAME
    )
    with pytest.raises(ValueError, match="subject"):
        _ = undecodable.subject
    undecodable.verify_directly_issued_by(manufacturer.certificate)  # validly signed all the same

    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "SN-7")
    with caplog.at_level(logging.DEBUG, logger="custom_components.est_pairing.est"):
        status, content_type, body = await post(server, operation, csr, undecodable, factory_key)
    assert status == 400, body
    assert content_type.startswith("text/plain")
    assert body == b"client certificate cannot be decoded\n"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert server.service.policy.pending_requests() == []
    assert len(server.service.ledger) == 0


async def test_a_factory_certificate_cryptography_cannot_load_is_a_400(
    server: RunningServer, manufacturer: HouseholdCA, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    factory_key = ec.generate_private_key(ec.SECP256R1())
    manufacturer_key = serialization.load_pem_private_key(manufacturer.to_pem()[1], password=None)
    assert isinstance(manufacturer_key, ec.EllipticCurvePrivateKey)
    der = forge.with_long_form_serial_length(factory_certificate(manufacturer, factory_key), manufacturer_key)
    with pytest.raises(ValueError, match="InvalidLength"):
        x509.load_der_x509_certificate(der)
    # The ssl module loads client certificates from files only, and cryptography cannot hold this one.
    (tmp_path / "factory.pem").write_text(ssl.DER_cert_to_PEM_cert(der))
    (tmp_path / "factory.key").write_bytes(
        factory_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = client_ssl_context(server.service.ca.certificate)
    context.load_cert_chain(tmp_path / "factory.pem", tmp_path / "factory.key")
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "SN-7")
    with caplog.at_level(logging.DEBUG, logger="custom_components.est_pairing.est"):
        status, _, body = await post_over(server, "simpleenroll", csr, context)
    assert (status, body) == (400, b"client certificate cannot be decoded\n")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert server.service.policy.pending_requests() == []
    assert len(server.service.ledger) == 0
