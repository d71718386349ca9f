"""What the benchmarks feed the server: CSRs, a pre-filled ledger, and the crypto limit to compare with.

Everything here goes through the EST library (imported as ``est``, as ``scripts/est-server`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from custom_components.est_pairing.est.ca import HouseholdCA, IssuedName
from custom_components.est_pairing.est.service import EstService, ServiceConfig
from custom_components.est_pairing.est.storage import JournalFile
from custom_components.est_pairing.est.tls import ListenerNames
from custom_components.est_pairing.est.wire import (
    PKCS10,
    basic_authorization,
    decode_body,
    decode_certs_only,
    encode_base64,
)
from est_tools.appliance.client import build_csr
from est_tools.standalone.cli import open_service

BENCH_APPLIANCE = "bench-appliance"
LEDGER_FILE = "ledger.jsonl"  # where est_tools.standalone.cli.open_service keeps the ledger
_FILL_BATCH = 1000


def service_config(host: str, port: int = 0) -> ServiceConfig:
    """The configuration ``est-server serve --host HOST`` runs with (names and all)."""
    return ServiceConfig(
        ca_name="Bench",
        port=port,
        bind_host=host,
        names=ListenerNames.from_hosts([host, "localhost", "127.0.0.1"]),
    )


def enrollment_headers(username: str, password: str) -> tuple[tuple[str, str], ...]:
    """The headers of a simpleenroll request with HTTP Basic credentials."""
    return (("Content-Type", PKCS10), ("Authorization", basic_authorization(username, password)))


def csr_bodies(count: int, *, appliance_id: str = BENCH_APPLIANCE) -> list[bytes]:
    """``count`` simpleenroll bodies: fresh EC P-256 keys, CSRs as the appliance profile has them, base64."""
    return [
        encode_base64(
            build_csr(ec.generate_private_key(ec.SECP256R1()), appliance_id).public_bytes(
                serialization.Encoding.DER
            )
        )
        for _ in range(count)
    ]


def check_enrollment(request_body: bytes, response_body: bytes, ca: x509.Certificate) -> str | None:
    """Why an answer is not the certificate the request asked for (None when it is)."""
    try:
        csr = x509.load_der_x509_csr(decode_body(request_body))
        certificates = decode_certs_only(response_body)
    except ValueError as err:
        return f"undecodable: {err}"
    certificate = certificates[0]
    if certificate.public_key() != csr.public_key():
        return "certificate is for another key"
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError) as err:
        return f"certificate is not from the CA: {err}"
    except Exception:  # noqa: BLE001 - InvalidSignature and friends
        return "certificate signature does not verify against the CA"
    return None


def crypto_limit(seconds: float, ca: HouseholdCA) -> float:
    """CSR load + signature check + certificate build + sign per second, on the calling thread."""
    ders = [decode_body(body) for body in csr_bodies(64)]
    now = datetime.now(UTC)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while (finished := time.perf_counter()) < deadline:
        for der in ders:
            csr = x509.load_der_x509_csr(der)
            if not csr.is_signature_valid:
                raise RuntimeError("a freshly made CSR does not verify")
            ca.issue_appliance_certificate(
                public_key=csr.public_key(),
                name=IssuedName(BENCH_APPLIANCE),
                server_auth=False,
                serial_number=x509.random_serial_number(),
                not_before=now,
                not_after=now + timedelta(days=365),
                crl_url="https://127.0.0.1:8443/crl",
            )
        done += len(ders)
    return done / (finished - started)


async def prepare_data_dir(data_dir: Path, host: str, *, certificates: int) -> EstService:
    """Create the CA in ``data_dir`` and record ``certificates`` issued certificates in its ledger.

    The certificates are really signed and recorded through the ledger's API (group-committed in
    batches), exactly as enrollments would leave them, for appliances ``filled-N``.
    """
    service = open_service(data_dir, service_config(host))
    await service.load()
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(min(certificates, 16))]
    now = service.now()
    for start in range(0, certificates, _FILL_BATCH):
        batch = []
        for number in range(start, min(start + _FILL_BATCH, certificates)):
            appliance_id = f"filled-{number}"
            certificate = service.ca.issue_appliance_certificate(
                public_key=keys[number % len(keys)],
                name=IssuedName(appliance_id),
                server_auth=False,
                serial_number=x509.random_serial_number(),
                not_before=now - timedelta(minutes=5),
                not_after=now + timedelta(days=365),
                crl_url=service.crl_url,
            )
            batch.append(service.ledger.record_issued(certificate, appliance_id))
        await asyncio.gather(*batch)
    await service.flush()
    return service


def make_compaction_due(data_dir: Path) -> None:
    """Leave the ledger journal due for compaction at the next write, as a long-running server's is.

    The ledger compacts once the journal holds as many events again as it has records; no-op
    ``meta`` events (the CRL number, unchanged) take the place of the revocations and re-issues
    that would have accumulated.
    """
    journal = JournalFile(data_dir / LEDGER_FILE)
    records = sum(event["op"] == "issued" for event in journal.read_sync())
    crl_number = {"op": "meta", "crl_number": 0}
    journal.append_sync([crl_number] * (max(64, records) + 1))


def first_problem(pairs: Sequence[tuple[bytes, bytes]], ca: x509.Certificate) -> str | None:
    """The first answer among ``pairs`` that is not a right certificate, described."""
    for request_body, response_body in pairs:
        if (problem := check_enrollment(request_body, response_body, ca)) is not None:
            return problem
    return None
