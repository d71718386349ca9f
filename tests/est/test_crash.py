"""Crash safety: SIGKILL the standalone server at random moments of an enrollment storm, 50 times.

Each kill comes once the server has handed out a random number (1 to 4) of new certificates and while
at least one request sent to it awaits its answer, however fast or slow the machine. After every kill
the server is started again on the same data directory. At the end the CA key loads, the ledger
parses, every certificate any client received is in the ledger (for the key and name it carries),
and no serial number was issued twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
import random
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.fingerprints import public_key_fingerprint
from custom_components.est_pairing.est.storage import JournalFile
from est_tools.appliance.client import client_ssl_context, renewal_csr

from . import forge, rawhttp, standalone

pytestmark = pytest.mark.slow  # real server processes killed during enrollment storms

KILLS = 50
CLIENTS = 6
LIVENESS = 60.0  # seconds a fresh server may take to hand out its certificates (a hang, not a speed)
EST = "/.well-known/est"


@dataclass
class Storm:
    """What the clients saw across all runs of the server."""

    ca: x509.Certificate
    received: dict[int, x509.Certificate] = field(default_factory=dict)  # serial -> certificate
    keys: dict[int, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    renewable: set[int] = field(default_factory=set)  # enrolled, not renewed yet
    awaiting: int = 0  # requests sent in full and not yet answered

    def context(self, client: int | None = None) -> ssl.SSLContext:
        if client is None:
            return client_ssl_context(self.ca)
        return client_ssl_context(self.ca, certificate=self.received[client], private_key=self.keys[client])


async def enroll_forever(storm: Storm, port: int, worker: str, rng: random.Random) -> None:
    """Enroll new appliances (and now and then renew one) until the server dies under us."""
    for number in range(1_000_000):
        key = forge.new_key()
        renew = storm.renewable and rng.random() < 0.2
        if renew:
            # A certificate renews once; one from a renewal only later in its life (429 before).
            serial = rng.choice(sorted(storm.renewable))
            storm.renewable.discard(serial)
            body = forge.body(forge.request_der(renewal_csr(key, storm.received[serial])))
            request = rawhttp.http_request(
                "POST", f"{EST}/simplereenroll", headers={"Content-Type": wire.PKCS10}, body=body
            )
            context = storm.context(serial)
        else:
            appliance_id = f"{worker}-{number}"
            headers = {
                "Content-Type": wire.PKCS10,
                "Authorization": wire.basic_authorization(appliance_id, "1"),
            }
            body = forge.body(forge.build(key, appliance_id))
            request = rawhttp.http_request("POST", f"{EST}/simpleenroll", headers=headers, body=body)
            context = storm.context()
        try:
            async with rawhttp.connect(port, tls=context) as connection:
                await connection.send(request)
                storm.awaiting += 1
                try:
                    answer = await connection.response()
                finally:
                    storm.awaiting -= 1
        except (OSError, TimeoutError):
            return  # the server is gone
        if answer is None:
            return
        assert answer.status == 200, answer.text
        (certificate,) = wire.decode_certs_only(answer.body)
        assert certificate.serial_number not in storm.received, "a serial number handed out twice"
        storm.received[certificate.serial_number] = certificate
        storm.keys[certificate.serial_number] = key
        if not renew:
            storm.renewable.add(certificate.serial_number)


async def until_kill_time(storm: Storm, workers: list[asyncio.Task[None]], certificates: int) -> None:
    """Wait until ``certificates`` more were received and a request awaits its answer."""
    target = len(storm.received) + certificates
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS
    while len(storm.received) < target or storm.awaiting == 0:
        if all(worker.done() for worker in workers):
            await asyncio.gather(*workers)  # a worker's failed assertion, if that is why
            pytest.fail(f"the workers stopped with {target - len(storm.received)} certificate(s) to go")
        if loop.time() > deadline:
            pytest.fail(f"{target - len(storm.received)} certificate(s) short after {LIVENESS} s")
        await asyncio.sleep(0.005)


async def test_sigkill_during_an_enrollment_storm(tmp_path: Path) -> None:
    rng = random.Random(7)  # noqa: S311 - kill moments, not secrets
    data_dir = tmp_path / "data"
    first = await standalone.start(data_dir, "--auto-approve")
    fingerprint = first.fingerprint
    ca = x509.load_pem_x509_certificate((data_dir / "ca.pem").read_bytes())
    storm = Storm(ca)
    server = first
    for kill in range(KILLS):
        if kill:
            server = await standalone.start(data_dir, "--auto-approve")
            assert server.fingerprint == fingerprint  # the CA survived the last kill
        workers = [
            asyncio.create_task(enroll_forever(storm, server.port, f"k{kill}w{worker}", rng))
            for worker in range(CLIENTS)
        ]
        await until_kill_time(storm, workers, certificates=rng.randint(1, 4))
        await server.kill()  # sends SIGKILL before it first yields: still a request awaits its answer
        await asyncio.gather(*workers)

    last = await standalone.start(data_dir, "--auto-approve")  # starts, serves, and stops cleanly
    answer = await rawhttp.exchange(
        last.port, rawhttp.http_request("GET", f"{EST}/cacerts"), tls=storm.context()
    )
    assert answer is not None and answer.status == 200
    assert "stopped" in await last.stop()

    HouseholdCA.from_pem((data_dir / "ca.pem").read_bytes(), (data_dir / "ca.key").read_bytes())
    events = JournalFile(data_dir / "ledger.jsonl").read_sync()
    issued = [event for event in events if event["op"] == "issued"]
    serials = [int(event["serial"], 16) for event in issued]
    assert len(serials) == len(set(serials)), "a serial number issued twice"
    ledger = {int(event["serial"], 16): event for event in issued}
    for serial, certificate in storm.received.items():
        certificate.verify_directly_issued_by(ca)
        assert serial in ledger, f"certificate {serial:x} was handed out but is not in the ledger"
        assert ledger[serial]["key"] == public_key_fingerprint(certificate.public_key())
        assert ledger[serial]["subject"] == certificate.subject.rfc4514_string()
