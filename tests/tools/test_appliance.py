"""The simulated appliance against the real listener on 127.0.0.1: what its owner sees and its exit codes.

Discovery over mDNS is left out here (it multicasts): these runs name the server with --server or
--qr. tests/e2e/test_mdns_pairing.py covers discovery, inside a private network namespace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
import errno
import os
from pathlib import Path
import re
import socket
import stat
import sys
import time
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.discovery import qr_payload
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from custom_components.est_pairing.est.limits import FREE_ATTEMPTS
from est_tools.appliance import agent, cli as cli
from est_tools.appliance.agent import Appliance
from est_tools.appliance.cli import ExitCode
from est_tools.appliance.keystore import KeyStore
from tests.est import forge
from tests.est.conftest import RunningServer, make_service, oven_server
from tests.est.manufacturer import LATER, Manufacturer
from tests.est.scripted import ScriptedHub, Step, scripted_hub, serving_tls

pytestmark = pytest.mark.slow  # the reference appliance against real servers, waiting as it would

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs" / "appliance-profile.md"


class Run:
    """One run of the appliance: its exit code, its progress lines, and its one-line error."""

    def __init__(self, code: int, lines: list[str], error: str) -> None:
        self.code, self.lines, self.error = code, lines, error

    def line(self, text: str) -> str:
        (found,) = self.lines_with(text)
        return found

    def lines_with(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


async def appliance(
    capsys: pytest.CaptureFixture[str],
    state_dir: Path,
    *args: str,
    when_waiting: Callable[[], Coroutine[Any, Any, None]] | None = None,
    until: str | None = None,
) -> Run:
    """Run the appliance in this event loop, as ``scripts/appliance ARGS --state-dir DIR`` would.

    With ``until`` it runs on (no ``--once``) and is stopped, as by SIGTERM, once it reports that text.
    """
    config = cli.config_from(cli.parser().parse_args([*args, "--state-dir", str(state_dir)]))
    lines: list[str] = []
    helper: asyncio.Task[None] | None = None
    running: asyncio.Task[int] | None = None

    def report(message: str) -> None:
        nonlocal helper
        lines.append(message)
        if when_waiting is not None and "waiting for the owner" in message and helper is None:
            helper = asyncio.get_running_loop().create_task(when_waiting())
        if until is not None and until in message and running is not None:
            running.cancel()

    capsys.readouterr()
    running = asyncio.create_task(cli.run(Appliance(config, report), once=until is None))
    code = await running
    if helper is not None:
        await helper
    return Run(code, lines, capsys.readouterr().err.strip())


def stored_certificate(state_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((state_dir / "certificate.pem").read_bytes())


async def test_pairs_through_the_pin_exchange_and_pins_the_ca_it_authenticated(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await appliance(
        capsys, tmp_path, "--id", "oven", "--pin", "123456", "--server", server.url, "--name", "Kitchen oven"
    )
    assert run.code == ExitCode.OK, run.error
    ca = server.service.ca
    assert run.line("enrolling as oven through the PIN exchange (the PIN never leaves the appliance)")
    assert format_fingerprint(ca.fingerprint) in run.line("the PIN exchange authenticated the hub's CA")
    assert not [line for line in run.lines if "trusting" in line]  # no trust on first use
    assert "enrolled: CN=oven" in run.line("enrolled")
    assert x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()) == ca.certificate
    certificate = stored_certificate(tmp_path)
    certificate.verify_directly_issued_by(ca.certificate)
    assert certificate.subject.rfc4514_string() == "CN=oven"
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["oven.local"]
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600

    again = await appliance(capsys, tmp_path, "--id", "oven", "--pin", "123456", "--server", server.url)
    assert again.code == ExitCode.OK
    assert again.line("holding CN=oven")  # nothing to do: no request, no second trust decision
    assert not [line for line in again.lines if "trusting" in line]
    assert len(server.service.ledger) == 1


async def test_legacy_basic_never_downgrades_a_hub_that_offers_the_exchange(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await appliance(
        capsys, tmp_path, "--id", "oven", "--pin", "123456", "--legacy-basic", "--server", server.url
    )
    assert run.code == ExitCode.OK, run.error
    assert run.line("enrolling as oven through the PIN exchange")
    assert not run.lines_with("HTTP Basic")


async def test_an_id_that_is_no_host_name_enrolls_without_a_dns_name(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``oven-.local`` cannot be a dNSName (RFC 1123): the appliance asks for none rather than be refused."""
    await server.service.policy.preregister("oven-", "123456")
    run = await appliance(capsys, tmp_path, "--id", "oven-", "--pin", "123456", "--server", server.url)
    assert run.code == ExitCode.OK, run.error
    certificate = stored_certificate(tmp_path)
    assert certificate.subject.rfc4514_string() == "CN=oven-"
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)


async def test_the_owners_fingerprint_must_match(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = await appliance(
        capsys,
        tmp_path,
        "--id",
        "oven",
        "--pin",
        "123456",
        "--server",
        server.url,
        "--ca-fingerprint",
        "ab" * 32,
    )
    assert wrong.code == ExitCode.FINGERPRINT_MISMATCH
    assert wrong.error.startswith("appliance: CA fingerprint mismatch: ")
    assert not (tmp_path / "ca.pem").exists()  # nothing trusted, no credential sent
    assert len(server.service.policy.pending_requests()) == 0

    typed = format_fingerprint(server.service.ca.fingerprint).replace(" ", ":")
    right = await appliance(
        capsys, tmp_path, "--id", "oven", "--pin", "123456", "--server", server.url, "--ca-fingerprint", typed
    )
    assert right.code == ExitCode.OK, right.error
    assert right.line("the server's CA matches the expected fingerprint")


async def test_a_qr_payload_gives_server_and_fingerprint(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = qr_payload("127.0.0.1", server.service.port, server.service.ca.fingerprint)
    run = await appliance(capsys, tmp_path, "--id", "oven", "--pin", "123456", "--qr", payload)
    assert run.code == ExitCode.OK, run.error
    assert run.line("the server's CA matches the expected fingerprint")


async def test_the_pinned_ca_is_kept(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "oven"
    assert (
        await appliance(capsys, state, "--id", "oven", "--pin", "123456", "--server", server.url)
    ).code == 0
    impostor = make_service(tmp_path / "impostor")
    await impostor.load()
    await impostor.start()
    try:
        url = f"https://127.0.0.1:{impostor.port}"
        renewal = await appliance(capsys, state, "--id", "oven", "--server", url, "--renew-after", "0")
    finally:
        await impostor.stop()
    assert renewal.code == ExitCode.FINGERPRINT_MISMATCH
    assert "TLS certificate the trusted CA did not issue" in renewal.error

    other = await appliance(capsys, state, "--id", "oven", "--ca-fingerprint", impostor.ca.fingerprint)
    assert other.code == ExitCode.FINGERPRINT_MISMATCH  # checked before anything else, offline
    assert f"remove {state}" in other.error


async def test_waits_for_the_owner_and_shows_its_key(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def owner_approves() -> None:
        (pending,) = server.service.policy.pending_requests()
        await server.service.policy.approve(pending.request_id)

    run = await appliance(
        capsys, tmp_path, "--id", "fridge", "--server", server.url, when_waiting=owner_approves
    )
    assert run.code == ExitCode.OK, run.error
    key = serialization.load_pem_private_key((tmp_path / "key.pem").read_bytes(), password=None)
    ledger_key = server.service.ledger.for_appliance("fridge")[0].key_fingerprint
    shown = run.line("without a PIN: the owner approves by comparing this key fingerprint")
    assert format_fingerprint(ledger_key) in shown
    assert f"(Home Assistant shows {format_fingerprint(ledger_key, groups=4)})" in shown
    assert key.public_key() == stored_certificate(tmp_path).public_key()
    assert run.line("waiting for the owner to approve this appliance in Home Assistant ...")


@pytest.mark.parametrize(
    ("owner", "code", "message"),
    [
        (
            "reject",
            ExitCode.REJECTED,
            "appliance: refused: 403: the owner rejected this appliance; its key and certificate are "
            "discarded, the CA stays pinned in {state}/ca.pem; to pair again, run again: the owner "
            "approves a new key",
        ),
        ("nothing", ExitCode.NOT_APPROVED, "appliance: not approved: the owner did not approve within 1.5 s"),
    ],
)
@pytest.mark.parametrize("pin", [[], ["--pin", "246810"]], ids=["fingerprint", "PIN exchange"])
async def test_the_owner_says_no_or_nothing(
    server: RunningServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    owner: str,
    code: ExitCode,
    message: str,
    pin: list[str],
) -> None:
    async def decide() -> None:
        if owner == "reject":
            (pending,) = server.service.policy.pending_requests()
            server.service.policy.reject(pending.request_id)

    run = await appliance(
        capsys,
        tmp_path,
        "--id",
        "fridge",
        *pin,
        "--server",
        server.url,
        "--approval-timeout",
        "1.5",
        when_waiting=decide,
    )
    if pin:  # nothing is trusted before an exchange succeeds: no CA to keep
        message = message.replace(", the CA stays pinned in {state}/ca.pem", "")
    assert (run.code, run.error) == (code, message.format(state=tmp_path))
    assert not (tmp_path / "certificate.pem").exists()
    assert (tmp_path / "ca.pem").exists() is not bool(pin)


async def test_a_rejected_appliance_asks_again_with_a_new_key_under_the_pinned_ca(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The owner rejected it by mistake: running it again makes a new request, not a new trust decision."""
    policy = server.service.policy

    async def owner_rejects() -> None:
        (pending,) = policy.pending_requests()
        policy.reject(pending.request_id)

    async def owner_approves() -> None:
        (pending,) = policy.pending_requests()
        await policy.approve(pending.request_id)

    fridge = ("--id", "fridge", "--server", server.url)
    state = tmp_path / "fridge"
    rejected = await appliance(capsys, state, *fridge, when_waiting=owner_rejects)
    assert rejected.code == ExitCode.REJECTED
    rejected_key = rejected.line("enrolling as fridge").split("key SHA-256 ")[1].split(" (")[0]
    assert sorted(path.name for path in state.iterdir()) == ["ca.pem"]

    again = await appliance(capsys, state, *fridge, when_waiting=owner_approves)
    assert again.code == ExitCode.OK, again.error
    assert not [line for line in again.lines if "trusting" in line]  # the pin holds
    assert rejected_key not in again.line("enrolling as fridge")
    key = serialization.load_pem_private_key((state / "key.pem").read_bytes(), password=None)
    assert key.public_key() == stored_certificate(state).public_key()


async def test_a_rejected_appliance_that_cannot_discard_its_key_says_so(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only state directory: the one-line error tells the owner what to remove, no traceback."""

    def read_only(store: KeyStore) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    async def owner_rejects() -> None:
        (pending,) = server.service.policy.pending_requests()
        server.service.policy.reject(pending.request_id)

    monkeypatch.setattr(KeyStore, "discard_credentials", read_only)
    run = await appliance(
        capsys, tmp_path, "--id", "fridge", "--server", server.url, when_waiting=owner_rejects
    )
    assert run.code == ExitCode.REJECTED
    assert run.error.endswith(
        f"could not be discarded (Read-only file system): remove them from {tmp_path} but keep ca.pem"
    )


@pytest.mark.usefixtures("quick_retries")
async def test_a_wrong_pin_fails_its_exchanges_then_the_hub_locks_it_out(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = await appliance(capsys, tmp_path, "--id", "oven", "--pin", "000000", "--server", server.url)
    assert run.code == ExitCode.EXCHANGE_FAILED
    assert run.error == (
        f"appliance: PIN exchange failed: {agent.MAX_FAILED_EXCHANGES} PIN exchanges failed, the last with: "
        "401: the PIN exchange failed: appliance oven does not know the PIN the hub has for it (is the PIN "
        "right, and is this the household hub?); check the PIN; the owner may type it again, then run again"
    )
    assert len(run.lines_with("the PIN exchange failed (401")) == agent.MAX_FAILED_EXCHANGES - 1
    assert agent.MAX_FAILED_EXCHANGES < FREE_ATTEMPTS  # one run alone never locks the appliance out
    run = await appliance(capsys, tmp_path, "--id", "oven", "--pin", "000000", "--server", server.url)
    assert run.code == ExitCode.LOCKED_OUT  # every failed exchange counted like a wrong PIN
    assert re.fullmatch(r"appliance: locked out: 429: .+ \(retry after \d+ s\); wait, then .+", run.error)
    run = await appliance(capsys, tmp_path, "--id", "oven", "--pin", "123456", "--server", server.url)
    assert run.code == ExitCode.LOCKED_OUT  # the right PIN too, until the lockout ends
    assert len(server.service.ledger) == 0


async def test_renews_with_a_new_key_until_revoked(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        await appliance(capsys, tmp_path, "--id", "oven", "--pin", "123456", "--server", server.url)
    ).code == 0
    first = stored_certificate(tmp_path)

    run = await appliance(capsys, tmp_path, "--id", "oven", "--server", server.url, "--renew-after", "0")
    assert run.code == ExitCode.OK, run.error
    renewed = stored_certificate(tmp_path)
    assert run.line("renewed: CN=oven")
    assert renewed.subject == first.subject
    assert renewed.public_key() != first.public_key()  # rekeyed
    key = serialization.load_pem_private_key((tmp_path / "key.pem").read_bytes(), password=None)
    assert key.public_key() == renewed.public_key()
    assert not (tmp_path / "next-key.pem").exists()

    await server.service.registrar.revoke_appliance("oven")
    run = await appliance(capsys, tmp_path, "--id", "oven", "--server", server.url, "--renew-after", "0")
    assert run.code == ExitCode.REVOKED
    assert run.error == (
        "appliance: revoked: 403: the presented certificate has been revoked; its key and certificate "
        f"are discarded, the CA stays pinned in {tmp_path}/ca.pem; to pair again, run again: the owner "
        "approves a new key"
    )
    assert (tmp_path / "ca.pem").exists()
    assert not [name for name in ("key.pem", "certificate.pem", "next-key.pem") if (tmp_path / name).exists()]

    async def owner_approves() -> None:
        (pending,) = server.service.policy.pending_requests()
        await server.service.policy.approve(pending.request_id)

    again = await appliance(
        capsys, tmp_path, "--id", "oven", "--server", server.url, when_waiting=owner_approves
    )
    assert again.code == ExitCode.OK, again.error
    assert not [line for line in again.lines if "trusting" in line]
    assert stored_certificate(tmp_path).public_key() not in (first.public_key(), renewed.public_key())


def test_renewal_is_due_at_two_thirds_of_the_lifetime(tmp_path: Path) -> None:
    config = cli.config_from(cli.parser().parse_args(["--id", "oven", "--state-dir", str(tmp_path)]))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ca = HouseholdCA.create("Test", now=start)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = forge.issued_by(ca, key.public_key(), not_before=start, lifetime=timedelta(days=300))
    assert Appliance(config, print).renewal_due(certificate) == start + timedelta(days=200)


async def test_no_server_to_reach(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = await appliance(capsys, tmp_path, "--id", "oven", "--server", f"https://127.0.0.1:{port}")
    assert run.code == ExitCode.NO_SERVER
    assert run.error.startswith(
        f"appliance: no server: cannot reach the EST server at https://127.0.0.1:{port}"
    )


@pytest.mark.parametrize("pin", [[], ["--pin", "123456"]], ids=["fingerprint", "PIN exchange"])
async def test_a_server_url_that_is_no_est_server_is_no_server(
    server: RunningServer, ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], pin: list[str]
) -> None:
    """A mistyped --server (another HTTPS service, an unknown label) exits 3 and says what answered,
    not "an older hub" (which would send the PIN in HTTP Basic with --legacy-basic)."""

    async def a_web_page(_request: web.Request) -> web.Response:
        return web.Response(text="It works!")

    app = web.Application()
    app.router.add_get("/{anything:.*}", a_web_page)
    async with serving_tls(ca, app) as other_service:
        run = await appliance(capsys, tmp_path / "a", "--id", "fridge", *pin, "--server", other_service)
    assert run.code == ExitCode.NO_SERVER
    assert run.error == (
        f"appliance: no server: {other_service} answers, but not as an EST server: "
        "GET /.well-known/est/cacerts gave expected application/pkcs7-mime, got text/plain"
    )
    label = f"{server.url}/.well-known/est/ovn"  # a label the server does not have
    run = await appliance(capsys, tmp_path / "b", "--id", "fridge", *pin, "--server", label)
    assert run.code == ExitCode.NO_SERVER
    assert run.error == (
        f"appliance: no server: {server.url} answers, but not as an EST server: "
        "GET /.well-known/est/ovn/cacerts gave 404: unknown EST label"
    )
    assert not (tmp_path / "a" / "ca.pem").exists() and not (tmp_path / "b" / "ca.pem").exists()


async def test_a_state_directory_it_cannot_write_stops_it_before_it_asks_anyone(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It would pin the hub's CA, or make a request, and then fail to keep what it got."""
    (tmp_path / "file").write_text("")
    state_dir = tmp_path / "file" / "oven"
    run = await appliance(capsys, state_dir, "--id", "fridge", "--server", server.url)
    assert run.code == ExitCode.FAILED
    assert run.error == f"appliance: failed: --state-dir {state_dir}: Not a directory"
    assert run.lines == []  # it neither trusted the CA nor asked for a certificate
    assert server.service.policy.pending_requests() == []


@pytest.mark.parametrize(
    ("damaged", "complaint"),
    [
        ("ca.pem", "is not a PEM certificate"),
        ("certificate.pem", "is not a PEM certificate"),
        ("key.pem", "is not an unencrypted PEM private key"),
    ],
)
async def test_a_damaged_file_in_the_state_directory_is_named(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], damaged: str, complaint: str
) -> None:
    """Not cryptography's 'Could not deserialize key data ... [<OpenSSLError(...)>]' without a file name."""
    (tmp_path / damaged).write_text("-----BEGIN GARBAGE-----\n")
    run = await appliance(capsys, tmp_path, "--id", "fridge", "--server", server.url)
    assert run.code == ExitCode.FAILED
    assert run.error == f"appliance: failed: {tmp_path / damaged} {complaint} (a damaged state directory)"
    assert (tmp_path / damaged).read_text() == "-----BEGIN GARBAGE-----\n"  # left for the owner to look at


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


async def with_factory_certificate(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *,
    hub_trusts: x509.Certificate,
    chain: bytes,
    key: ec.EllipticCurvePrivateKey,
    issuer: str | None = None,
) -> tuple[Run, int]:
    """The appliance run with this factory PEM against a hub trusting ``hub_trusts``; the owner
    approves (checking the request names ``issuer``). The run, and the requests left waiting."""
    (tmp_path / "factory.pem").write_bytes(chain)
    (tmp_path / "factory.key").write_bytes(private_pem(key))
    service = make_service(tmp_path / "server", manufacturer_cas=[hub_trusts])
    await service.load()
    service.policy.retry_after = 1
    await service.start()

    async def owner_approves() -> None:
        (pending,) = service.policy.pending_requests()
        assert pending.factory_fingerprint is not None
        assert pending.factory_issuer is not None and (issuer or "") in pending.factory_issuer
        await service.policy.approve(pending.request_id)

    try:
        run = await appliance(
            capsys,
            tmp_path / "state",
            *(
                "--factory-cert",
                str(tmp_path / "factory.pem"),
                "--factory-key",
                str(tmp_path / "factory.key"),
            ),
            *("--server", f"https://127.0.0.1:{service.port}"),
            when_waiting=owner_approves,
        )
    finally:
        await service.stop()
    return run, len(service.policy.pending_requests())


async def test_enrolls_with_a_factory_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manufacturer = HouseholdCA.create("Acme Factory")
    factory_key = ec.generate_private_key(ec.SECP256R1())
    yesterday = datetime.now(UTC) - timedelta(days=1)
    factory_certificate = forge.issued_by(
        manufacturer,
        factory_key.public_key(),
        common_name="SN-7",
        not_before=yesterday,
        lifetime=timedelta(days=2),
    )
    run, _ = await with_factory_certificate(
        capsys, tmp_path, hub_trusts=manufacturer.certificate, chain=pem(factory_certificate), key=factory_key
    )
    assert run.code == ExitCode.OK, run.error
    assert run.line("enrolling as SN-7 with its factory certificate")
    assert stored_certificate(tmp_path / "state").subject.rfc4514_string() == "CN=SN-7"


async def test_sends_the_manufacturer_intermediate_with_its_factory_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hub trusts the manufacturer's root only: the handshake needs the intermediate too."""
    acme = Manufacturer.make(root_expires=LATER, intermediate_expires=LATER)
    run, _ = await with_factory_certificate(
        capsys,
        tmp_path,
        hub_trusts=acme.root,
        chain=pem(acme.factory, acme.intermediate),
        key=acme.factory_key,
        issuer="Acme Factory 2",
    )
    assert run.code == ExitCode.OK, run.error
    assert stored_certificate(tmp_path / "state").subject.rfc4514_string() == "CN=SN-7"


async def test_a_factory_certificate_the_hub_does_not_trust_is_a_refusal_not_a_missing_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without its intermediate the chain does not reach the root the hub trusts: the handshake fails."""
    acme = Manufacturer.make(root_expires=LATER, intermediate_expires=LATER)
    run, waiting = await with_factory_certificate(
        capsys, tmp_path, hub_trusts=acme.root, chain=pem(acme.factory), key=acme.factory_key
    )
    assert run.code == ExitCode.REJECTED, run.error
    assert run.error.startswith("appliance: refused: cannot reach the EST server at https://127.0.0.1:")
    assert "does not trust the certificate's issuer" in run.error
    assert waiting == 0


@pytest.mark.parametrize(
    ("order", "complaint"),
    [
        ("intermediate first", "the first certificate in"),
        ("root skipped", "did not issue"),
    ],
)
def test_a_factory_chain_out_of_order_is_a_usage_error(tmp_path: Path, order: str, complaint: str) -> None:
    acme = Manufacturer.make(root_expires=LATER, intermediate_expires=LATER)
    chain = (
        (acme.intermediate, acme.factory)
        if order == "intermediate first"
        else (acme.factory, acme.root, acme.intermediate)
    )
    (tmp_path / "factory.pem").write_bytes(pem(*chain))
    (tmp_path / "factory.key").write_bytes(private_pem(acme.factory_key))
    arguments = [
        "--factory-cert",
        str(tmp_path / "factory.pem"),
        "--factory-key",
        str(tmp_path / "factory.key"),
    ]
    with pytest.raises(ValueError, match=complaint):  # main() shows it as a usage error (exit 2)
        cli.config_from(cli.parser().parse_args(arguments))


def test_an_encrypted_factory_key_is_a_usage_error(tmp_path: Path) -> None:
    acme = Manufacturer.make(root_expires=LATER, intermediate_expires=LATER)
    (tmp_path / "factory.pem").write_bytes(pem(acme.factory))
    (tmp_path / "factory.key").write_bytes(
        acme.factory_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    arguments = [
        "--factory-cert",
        str(tmp_path / "factory.pem"),
        "--factory-key",
        str(tmp_path / "factory.key"),
    ]
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        cli.config_from(cli.parser().parse_args(arguments))


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ([], "--id is required"),
        (
            [
                "--id",
                "oven",
                "--server",
                "https://h:1",
                "--qr",
                "est://h:1/.well-known/est?sha256=" + "ab" * 32,
            ],
            "not both",
        ),
        (["--id", "oven", "--factory-cert", "x.pem"], "go together"),
        (["--id", "oven/1"], "appliance id must be"),
        (["--id", "oven", "--ca-fingerprint", "1234"], "64 hexadecimal digits"),
        (["--id", "oven", "--serial", "SN_1"], "PrintableString"),
        (["--id", "oven", "--serial", ""], "PrintableString"),
        (["--id", "oven", "--server", "http://h:1"], "https://HOST:PORT"),
        (
            [
                "--id",
                "oven",
                "--qr",
                "est://h:1/.well-known/est?sha256=" + "ab" * 32,
                "--ca-fingerprint",
                "cd" * 32,
            ],
            "differs",
        ),
    ],
)
def test_bad_command_lines(arguments: list[str], complaint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(arguments)
    assert exited.value.code == ExitCode.USAGE
    assert complaint in capsys.readouterr().err


def test_exit_codes_are_documented() -> None:
    documented = {
        int(code) for code in re.findall(r"^\s{4}(\d{1,2})\s{1,2}\S", cli.__doc__ or "", re.MULTILINE)
    }
    assert documented == {int(code) for code in ExitCode}
    profile = DOCS.read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \|", profile, re.MULTILINE), f"{code!r} missing from {DOCS.name}"
    assert len(set(cli.OUTCOMES.values())) == len(cli.OUTCOMES)


def test_a_renewal_interrupted_by_a_crash_keeps_certificate_and_key_together(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.enrollment_key()
    new_key = store.renewal_key()
    certificate = forge.issued_by(
        HouseholdCA.create("Test"),
        new_key.public_key(),
        not_before=datetime.now(UTC),
        lifetime=timedelta(days=1),
    )
    # The renewed certificate was written, then the process died before next-key.pem became key.pem.
    (tmp_path / "certificate.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    current = store.current()
    assert current is not None
    assert current[1].public_key() == certificate.public_key()
    assert not (tmp_path / "next-key.pem").exists()


async def test_the_command_documents_itself() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_tools.appliance",
        "--help",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    assert "exit codes: 0 ok, 1 failed, 2 usage, 3 no server" in " ".join(output.decode().split())


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-off without a Retry-After starts at a tenth of a second instead of five."""
    monkeypatch.setattr(agent, "_RETRY_FIRST", 0.1)


class FakeClock:
    """The appliance's wall clock and its waits: a wait moves the clock on at once."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(agent, "_now", fake.now)
    monkeypatch.setattr(agent, "_sleep", fake.sleep)
    return fake


@pytest.mark.usefixtures("quick_retries")
@pytest.mark.parametrize(
    ("pin", "failed"),
    [([], "enrollment failed"), (["--pin", "246810"], "the PIN exchange failed")],
    ids=["fingerprint", "PIN exchange"],
)
async def test_an_outage_while_waiting_for_the_owner_is_ridden_out(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], pin: list[str], failed: str
) -> None:
    """The hub restarts (or Wi-Fi drops) while the appliance waits: it keeps asking until it is back."""
    service = server.service

    async def restart_then_approve() -> None:
        port = service.port
        await service.stop()
        await asyncio.sleep(1.5)  # the appliance asks again meanwhile (every second) and cannot connect
        service.config.port = port
        await service.start()
        while not service.policy.pending_requests():
            await asyncio.sleep(0.05)
        (pending,) = service.policy.pending_requests()
        await service.policy.approve(pending.request_id, pin=pin[1] if pin else None)

    run = await appliance(
        capsys,
        tmp_path,
        *("--id", "fridge", *pin, "--server", server.url, "--approval-timeout", "30"),
        when_waiting=restart_then_approve,
    )
    assert run.code == ExitCode.OK, run.error
    assert [line for line in run.lines if line.startswith(f"{failed} (cannot reach the EST server")]
    assert stored_certificate(tmp_path).subject.rfc4514_string() == "CN=fridge"


@pytest.mark.usefixtures("quick_retries")
@pytest.mark.parametrize(
    "refusal",
    [
        Step(500, "could not record the certificate"),
        Step(408, "the request body did not arrive within 15 s"),
        Step(503, "too many requests are waiting for the owner", {"Retry-After": "1"}),
        Step(429, "too many requests are waiting from this address", {"Retry-After": "1"}),
        Step(429, "too many keys are waiting for this appliance id", {"Retry-After": "1"}),
    ],
    ids=["500", "408", "503", "429-address", "429-id"],
)
async def test_enrollment_asks_again_after_a_passing_refusal(
    ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], refusal: Step
) -> None:
    async with scripted_hub(ca, [refusal]) as hub:
        run = await appliance(
            capsys, tmp_path, "--id", "oven", "--pin", "123456", "--legacy-basic", "--server", hub.url
        )
    assert run.code == ExitCode.OK, run.error
    assert hub.answered == [("simpleenroll", refusal.status), ("simpleenroll", 200)]
    assert run.line(f"enrollment failed ({refusal.status}: {refusal.reason}")


@pytest.mark.parametrize(
    ("refusal", "code"),
    [
        (
            Step(429, "too many wrong secrets for this appliance; locked for a while", {"Retry-After": "1"}),
            ExitCode.LOCKED_OUT,
        ),
        (Step(401, "wrong secret for appliance oven"), ExitCode.WRONG_PIN),
    ],
    ids=["locked-out", "wrong-pin"],
)
async def test_enrollment_stops_at_a_lockout_or_a_wrong_pin(
    ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], refusal: Step, code: ExitCode
) -> None:
    async with scripted_hub(ca, [refusal]) as hub:
        run = await appliance(
            capsys, tmp_path, "--id", "oven", "--pin", "123456", "--legacy-basic", "--server", hub.url
        )
    assert run.code == code
    assert hub.answered == [("simpleenroll", refusal.status)]


async def test_a_renewal_answered_202_asks_again(
    ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RFC 7030 §4.2.3 holds for simplereenroll too: 202 + Retry-After, then the same request again."""
    async with scripted_hub(ca) as hub:
        enrolled = await appliance(
            capsys, tmp_path, "--id", "oven", "--pin", "1", "--legacy-basic", "--server", hub.url
        )
        assert enrolled.code == ExitCode.OK, enrolled.error
        hub.script.append(Step(202, "processing", {"Retry-After": "1"}))
        run = await appliance(capsys, tmp_path, "--id", "oven", "--server", hub.url, "--renew-after", "0")
    assert run.code == ExitCode.OK, run.error
    assert run.line("renewed: CN=oven")
    assert hub.answered[1:] == [("simplereenroll", 202), ("simplereenroll", 200)]


async def enrolled_oven(
    capsys: pytest.CaptureFixture[str], state_dir: Path, hub: ScriptedHub
) -> x509.Certificate:
    """Enroll the oven with its PIN at the scripted hub; its stored certificate."""
    enrolled = await appliance(
        capsys, state_dir, "--id", "oven", "--pin", "1", "--legacy-basic", "--server", hub.url
    )
    assert enrolled.code == ExitCode.OK, enrolled.error
    return stored_certificate(state_dir)


async def test_renewal_makes_a_last_attempt_just_before_expiry(
    ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    """A Retry-After reaching past notAfter is cut short: one more try while the certificate is valid."""
    async with scripted_hub(ca, lifetime=timedelta(hours=1, minutes=30)) as hub:
        first = await enrolled_oven(capsys, tmp_path, hub)
        hub.script.append(Step(503, "too many requests are waiting", {"Retry-After": "3600"}))
        run = await appliance(capsys, tmp_path, "--id", "oven", "--server", hub.url, until="renewed")
    assert run.code == ExitCode.OK, run.error
    assert hub.answered[1:] == [("simplereenroll", 503), ("simplereenroll", 200)]
    assert run.line("renewed: CN=oven")
    (retry,) = [line for line in run.lines if line.startswith("renewal failed (503")]
    waited = float(retry.rsplit("trying again in ", 1)[1].removesuffix(" s"))
    assert 0 < waited < 30 * 60  # at most until just before notAfter, half an hour after renewal was due
    assert stored_certificate(tmp_path).serial_number != first.serial_number


async def test_a_certificate_that_expires_unrenewed_enrolls_again(
    ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    """Profile section 8: renewals fail until the certificate expires; the same run enrolls again."""
    async with scripted_hub(ca, lifetime=timedelta(hours=1)) as hub:
        first = await enrolled_oven(capsys, tmp_path, hub)
        hub.always["simplereenroll"] = Step(500, "the CA failed")
        run = await appliance(
            capsys,
            tmp_path,
            "--id",
            "oven",
            "--pin",
            "1",
            "--legacy-basic",
            "--server",
            hub.url,
            until="enrolled",
        )
    assert run.code == ExitCode.OK, run.error
    renewals = hub.answered[1:-1]
    assert len(renewals) > 1
    assert set(renewals) == {("simplereenroll", 500)}
    assert hub.answered[-1] == ("simpleenroll", 200)
    assert run.line(
        "the certificate expired before it could be renewed (500: the CA failed); "
        "enrolling again with a new key"
    )
    assert stored_certificate(tmp_path).serial_number != first.serial_number
    assert stored_certificate(tmp_path).public_key() != first.public_key()  # an expired key is not reused


async def test_a_certificate_found_expired_at_start_enrolls_again_with_a_new_key(
    ca: HouseholdCA, tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    """Switched off past its certificate's notAfter: the appliance enrolls again, not with the old key."""
    async with scripted_hub(ca, lifetime=timedelta(hours=1)) as hub:
        first = await enrolled_oven(capsys, tmp_path, hub)
        clock.offset = timedelta(hours=2)
        run = await appliance(
            capsys, tmp_path, "--id", "oven", "--pin", "1", "--legacy-basic", "--server", hub.url
        )
    assert run.code == ExitCode.OK, run.error
    assert run.line("the stored certificate has expired; enrolling again with a new key")
    assert hub.answered == [("simpleenroll", 200), ("simpleenroll", 200)]
    assert stored_certificate(tmp_path).public_key() != first.public_key()


async def test_a_certificate_the_server_calls_expired_enrolls_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hub's clock says the certificate has expired (403): the appliance enrolls again at once."""
    later = timedelta()
    async with oven_server(tmp_path / "server", clock=lambda: time.time() + later.total_seconds()) as server:
        state = tmp_path / "state"
        first = await appliance(capsys, state, "--id", "oven", "--pin", "123456", "--server", server.url)
        assert first.code == ExitCode.OK, first.error
        later = stored_certificate(state).not_valid_after_utc - datetime.now(UTC) + timedelta(days=1)

        async def owner_approves() -> None:  # the pre-registration was used: a new key asks the owner
            (pending,) = server.service.policy.pending_requests()
            await server.service.policy.approve(pending.request_id, pin="123456")

        run = await appliance(
            capsys,
            state,
            *("--id", "oven", "--pin", "123456", "--server", server.url, "--renew-after", "0"),
            when_waiting=owner_approves,
        )
    assert run.code == ExitCode.OK, run.error
    assert run.line("the presented certificate has expired; enroll again")
    assert run.line("enrolled: CN=oven")
    records = server.service.ledger.for_appliance("oven")
    assert len(records) == 2
    assert records[0].key_fingerprint != records[1].key_fingerprint  # a new key, not the expired one's
