"""Repeated requests to the standalone server: its ledger and RSS before and after (``--repeats``).

Two appliances use their pre-registrations: one enrolls and renews once, the other gets a key from
serverkeygen. Then ``count`` requests that must not add a certificate: the same serverkeygen request
again and again, and renewal attempts with a fresh key each time (of the certificate renewed
already: 403; of the renewal, too early in its life: 429), with the same renewal asked again now
and then (its answer again); ``concurrency`` at a time. The ledger and RSS are read after the
set-up, after the first tenth (connections and caches warm), and at the end.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
import json
from pathlib import Path
import secrets
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from custom_components.est_pairing.est.errors import EstError
from custom_components.est_pairing.est.status import status_for
from est_tools.appliance.client import EstClient, build_csr, renewal_csr

from .servers import ServerProcess, start_server
from .workload import BENCH_APPLIANCE, prepare_data_dir

_KEYGEN_APPLIANCE = "bench-keygen"


@dataclass(frozen=True, slots=True)
class LedgerSize:
    """What ``est-server list`` reports about the certificates, and the server's RSS, at one moment."""

    certificates: int
    valid: int
    rss: int

    def line(self) -> str:
        """Certificates (valid), RSS in MiB."""
        return f"{self.certificates} certificates ({self.valid} valid), RSS {self.rss / 2**20:.1f} MiB"


@dataclass(frozen=True, slots=True)
class Repeats:
    """The ledger and RSS around ``requests`` repeated requests, and how they were answered."""

    requests: int
    before: LedgerSize
    warm: LedgerSize  # after the first tenth
    after: LedgerSize
    statuses: dict[int, int]
    certificates_handed_out: int  # distinct serial numbers in the 200 answers
    seconds: float


def run(
    work_dir: Path,
    host: str,
    *,
    count: int,
    concurrency: int,
    cpus: set[int] | None,
    say: Callable[[str], None],
) -> Repeats:
    """Start the standalone server on ``cpus``, send the repeats, stop it."""
    data_dir = work_dir / "repeats"
    asyncio.run(prepare_data_dir(data_dir, host, certificates=0))
    password = secrets.token_urlsafe(16)
    args = ["serve", "--data-dir", str(data_dir), "--host", host, "--port", "0"]
    args += ["--user", f"{BENCH_APPLIANCE}:{password}", "--user", f"{_KEYGEN_APPLIANCE}:{password}"]
    server = start_server("est_tools.standalone", args, log=work_dir / "repeats-server.log", cpus=cpus)
    try:
        say(f"repeats: {count:,} repeated requests to the standalone server, {concurrency} at a time")
        repeats = asyncio.run(_repeat(server, data_dir, password, count, concurrency))
    finally:
        server.stop()
    statuses = ", ".join(f"{status}: {number:,}" for status, number in sorted(repeats.statuses.items()))
    say(f"  after the set-up:     {repeats.before.line()}")
    say(f"  after {count // 10:>6,} requests: {repeats.warm.line()}")
    say(f"  after {count:>6,} requests: {repeats.after.line()}")
    say(
        f"  answers ({repeats.seconds:.1f} s): {statuses}; "
        f"{repeats.certificates_handed_out} distinct certificate(s) in the 200s"
    )
    return repeats


async def _repeat(
    server: ServerProcess, data_dir: Path, password: str, count: int, concurrency: int
) -> Repeats:
    ca = x509.load_pem_x509_certificate((data_dir / "ca.pem").read_bytes())
    loop = asyncio.get_running_loop()
    async with EstClient(f"https://{server.host}:{server.port}", ca) as client:
        first_key = _key()
        first = await client.simpleenroll(
            build_csr(first_key, BENCH_APPLIANCE), username=BENCH_APPLIANCE, password=password
        )
        assert isinstance(first, x509.Certificate)  # noqa: S101 - the pre-registration admits it
        renewed_key = _key()
        renewal = renewal_csr(renewed_key, first)
        renewed = await client.reenroll(renewal, first, first_key)
        keygen = build_csr(_key(), _KEYGEN_APPLIANCE)
        await client.serverkeygen(keygen, username=_KEYGEN_APPLIANCE, password=password)
        before = await asyncio.to_thread(_measure, server, data_dir)

        statuses: Counter[int] = Counter()
        handed_out: set[int] = set()
        gate = asyncio.Semaphore(concurrency)

        async def one(number: int) -> None:
            async with gate:
                try:
                    match number % 6:
                        case 0 | 2 | 4:  # the same serverkeygen request again
                            _, certificate = await client.serverkeygen(
                                keygen, username=_KEYGEN_APPLIANCE, password=password
                            )
                        case 1:  # the renewed certificate once more, with a fresh key: 403
                            certificate = await client.reenroll(renewal_csr(_key(), first), first, first_key)
                        case 3:  # the renewal, at once, with a fresh key: 429
                            certificate = await client.reenroll(
                                renewal_csr(_key(), renewed), renewed, renewed_key
                            )
                        case _:  # the same renewal again (its answer lost): that answer
                            certificate = await client.reenroll(renewal, first, first_key)
                except EstError as err:
                    statuses[status_for(err)] += 1
                    return
                statuses[200] += 1
                handed_out.add(certificate.serial_number)

        started = loop.time()
        tenth = count // 10
        await asyncio.gather(*(one(number) for number in range(tenth)))
        warm = await asyncio.to_thread(_measure, server, data_dir)
        await asyncio.gather(*(one(number) for number in range(tenth, count)))
        seconds = loop.time() - started
    after = await asyncio.to_thread(_measure, server, data_dir)
    return Repeats(count, before, warm, after, dict(statuses), len(handed_out), seconds)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _measure(server: ServerProcess, data_dir: Path) -> LedgerSize:
    """The running server's certificates (``est-server list --json``, over its control socket), and RSS."""
    listing = subprocess.run(
        [sys.executable, "-m", "est_tools.standalone", "list", "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        check=True,
        text=True,
    )
    certificates = json.loads(listing.stdout)["certificates"]
    valid = sum(c["status"] == "valid" for c in certificates)
    return LedgerSize(len(certificates), valid, server.rss())
