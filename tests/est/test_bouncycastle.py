"""Bouncy Castle's EST client (Java, ``org.bouncycastle.est``) as an independent client, next to curl.

``interop/java/EstInterop.java`` is compiled once per session with ``javac`` against the Debian
packages' jars (libbcprov-java, libbcutil-java, libbcpkix-java; CI installs them with a JDK) into a
temporary directory, and runs each EST operation against the real listener over TLS on 127.0.0.1.
What it wrote is checked here with cryptography. Skipped, saying why, only where Java or the jars
cannot be found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import shutil
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
import pytest

from custom_components.est_pairing.est.limits import FREE_ATTEMPTS

from .conftest import RunningServer

pytestmark = pytest.mark.slow  # Bouncy Castle's EST client in a JVM

SOURCE = Path(__file__).parent / "interop" / "java" / "EstInterop.java"
JAR_DIRECTORIES = (Path("/usr/share/java"),)  # where Debian's packages put them
JARS = ("bcprov", "bcutil", "bcpkix")  # libbcprov-java, libbcutil-java, libbcpkix-java
RUN_TIMEOUT = 120.0  # one JVM run, on a loaded machine


def find_jar(name: str) -> Path | None:
    """``name.jar`` (Debian's version-less link), else the newest ``name-<version>.jar``."""
    for directory in JAR_DIRECTORIES:
        if (plain := directory / f"{name}.jar").is_file():
            return plain
        versioned = sorted(directory.glob(f"{name}-[0-9]*.jar"))
        if versioned:
            return versioned[-1]
    return None


@dataclass(frozen=True)
class Harness:
    """The compiled harness: how to run one operation of it."""

    java: str
    classpath: str

    def command(self, *args: str) -> list[str]:
        return [self.java, "-cp", self.classpath, "EstInterop", *args]


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    """EstInterop.java compiled into a temporary directory (never next to the source)."""
    java, javac = shutil.which("java"), shutil.which("javac")
    if java is None or javac is None:
        pytest.skip(
            "Bouncy Castle's EST client needs a JDK (java and javac): apt-get install default-jdk-headless"
        )
    jars = {name: find_jar(name) for name in JARS}
    if missing := [name for name, jar in jars.items() if jar is None]:
        pytest.skip(
            f"Bouncy Castle jars not found in {', '.join(map(str, JAR_DIRECTORIES))} ({', '.join(missing)}):"
            " apt-get install libbcprov-java libbcutil-java libbcpkix-java"
        )
    libraries = os.pathsep.join(str(jar) for jar in jars.values())
    classes = tmp_path_factory.mktemp("bouncycastle-classes")
    compiled = subprocess.run(
        [javac, "-cp", libraries, "-d", str(classes), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT,
    )
    assert compiled.returncode == 0, compiled.stderr
    return Harness(java, os.pathsep.join([str(classes), libraries]))


async def bouncy(
    harness: Harness,
    server: RunningServer,
    directory: Path,
    operation: str,
    *args: str,
    on_line: Callable[[str], None] | None = None,
) -> list[str]:
    """Run one operation against the server; its output lines. Fails the test if it fails."""
    process = await asyncio.create_subprocess_exec(
        *harness.command(operation, f"127.0.0.1:{server.service.port}", str(directory), *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.create_task(process.stderr.read())
    lines: list[str] = []
    async with asyncio.timeout(RUN_TIMEOUT):
        while raw := await process.stdout.readline():
            lines.append(raw.decode().rstrip("\n"))
            if on_line is not None:
                on_line(lines[-1])
        code = await process.wait()
    stderr = (await errors).decode(errors="replace")
    assert code == 0, f"Bouncy Castle {operation} failed: {stderr}"
    return lines


@pytest.fixture
async def trusting(harness: Harness, server: RunningServer, tmp_path: Path) -> Path:
    """A directory whose ca.pem Bouncy Castle fetched without trust and pinned by its fingerprint."""
    fingerprint = server.service.ca.fingerprint
    assert await bouncy(harness, server, tmp_path, "bootstrap", fingerprint) == [f"pinned {fingerprint}"]
    (ca,) = x509.load_pem_x509_certificates((tmp_path / "ca.pem").read_bytes())
    assert ca == server.service.ca.certificate
    return tmp_path


def issued(directory: Path, name: str) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """The certificate and key Bouncy Castle stored under ``name``."""
    (certificate,) = x509.load_pem_x509_certificates((directory / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / f"{name}.key.pem").read_bytes(), password=None)
    return certificate, key


def assert_issued_to(
    server: RunningServer, certificate: x509.Certificate, key: PrivateKeyTypes, appliance_id: str
) -> None:
    """From the household CA, for ``appliance_id``, carrying ``key``, and in the ledger."""
    certificate.verify_directly_issued_by(server.service.ca.certificate)
    assert certificate.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, appliance_id)])
    assert certificate.public_key() == key.public_key()
    record = server.service.ledger.get(certificate.serial_number)
    assert record is not None and record.appliance_id == appliance_id


async def test_cacerts_without_trust_then_verified(
    harness: Harness, server: RunningServer, trusting: Path
) -> None:
    await bouncy(harness, server, trusting, "cacerts")
    assert x509.load_pem_x509_certificates((trusting / "cacerts.pem").read_bytes()) == [
        server.service.ca.certificate
    ]


async def test_csrattrs(harness: Harness, server: RunningServer, trusting: Path) -> None:
    assert sorted(await bouncy(harness, server, trusting, "csrattrs")) == [
        "requirement 1.2.840.10045.3.1.7",  # secp256r1
        "requirement 1.2.840.10045.4.3.2",  # ecdsa-with-SHA256
    ]


async def test_enroll_after_the_challenge_then_renew_with_a_new_key(
    harness: Harness, server: RunningServer, trusting: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Bouncy Castle sends its first request without credentials, as RFC 7030 allows, and answers
    the 401 challenge; then it renews over TLS with its certificate as client certificate."""
    caplog.set_level(logging.DEBUG, logger="custom_components.est_pairing.est")
    assert await bouncy(harness, server, trusting, "enroll", "oven", "123456") == []
    assert "EST refused a request with 401: authenticate with the appliance id and PIN" in caplog.text
    certificate, key = issued(trusting, "oven")
    assert_issued_to(server, certificate, key, "oven")
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    await bouncy(harness, server, trusting, "reenroll", "oven")
    renewed, new_key = issued(trusting, "oven-renewed")
    assert_issued_to(server, renewed, new_key, "oven")
    assert renewed.serial_number != certificate.serial_number
    assert new_key.public_key() != key.public_key()


async def test_the_202_loop_while_the_owner_approves(
    harness: Harness, server: RunningServer, trusting: Path
) -> None:
    """An unknown appliance waits: Bouncy Castle retries its EnrollmentResponse after notBefore
    (Retry-After: 1) until it is completed, and the owner approves meanwhile."""
    policy = server.service.policy
    approved: list[str] = []

    def owner(line: str) -> None:
        if line.startswith("pending ") and not approved:
            (pending,) = policy.pending_requests()
            assert pending.appliance_id == "fridge"
            policy.approve(pending.request_id, pin="135790")
            approved.append(pending.request_id)

    lines = await bouncy(harness, server, trusting, "enroll", "fridge", "135790", on_line=owner)
    assert approved
    # Each 202 said when to ask again: Retry-After 1 (less the time its line took to get here).
    assert lines and all(line in {"pending 0", "pending 1"} for line in lines), lines
    assert_issued_to(server, *issued(trusting, "fridge"), "fridge")
    assert policy.pending_requests() == []


async def test_serverkeygen_after_the_challenge(
    harness: Harness, server: RunningServer, trusting: Path
) -> None:
    server.service.policy.preregister("kettle", "112233")
    await bouncy(harness, server, trusting, "serverkeygen", "kettle", "112233")
    certificate, key = issued(trusting, "kettle-generated")
    assert_issued_to(server, certificate, key, "kettle")
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # the request's key was EC: so is the made one


@pytest.mark.parametrize(
    ("appliance_id", "pin", "common_name", "lock", "status"),
    [
        ("oven", "000000", "oven", False, 401),  # a wrong PIN, after the challenge
        ("oven", "123456", "grill", False, 403),  # a name the credential does not cover
        ("oven", "123456", "oven", True, 429),  # locked out after wrong PINs
    ],
    ids=["wrong-pin", "other-name", "locked-out"],
)
async def test_refusals_reach_bouncy_castle_with_their_status(
    harness: Harness,
    server: RunningServer,
    trusting: Path,
    appliance_id: str,
    pin: str,
    common_name: str,
    lock: bool,
    status: int,
) -> None:
    """Bouncy Castle reads the body of a refusal it reports (its ESTException): these keep theirs."""
    for _ in range(FREE_ATTEMPTS if lock else 0):
        server.service.policy.throttle.failure(f"id:{appliance_id}")
    lines: Sequence[str] = await bouncy(harness, server, trusting, "refused", appliance_id, pin, common_name)
    assert lines == [f"refused {status}"]
    assert server.service.ledger.for_appliance(appliance_id) == []
