"""The standalone command as a user runs it: a real process, signals, the control socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import json
import os
from pathlib import Path
import socket
import stat
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est import storage
from custom_components.est_pairing.est.csr import inspect_request
from custom_components.est_pairing.est.fingerprints import public_key_fingerprint
from custom_components.est_pairing.est.policy import AwaitingOwner, ExchangeFailure, PendingEnrollment
from custom_components.est_pairing.est.service import ServiceConfig
from custom_components.est_pairing.est.tls import ListenerNames
from custom_components.est_pairing.est.verifiers import PinVerifier
from est_tools.appliance.client import EstClient, Pending, build_csr, client_ssl_context
from est_tools.standalone import cli
from tests.appliance_process import ApplianceProcess
from tests.est.conftest import make_service
from tests.est.standalone import ServerProcess, Serving, environment, est_server, start

pytestmark = pytest.mark.slow  # the standalone server as a real process


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[Serving]:
    server = await start(tmp_path, "--user", "oven:123456")
    yield server
    await server.kill()


async def test_serve_approve_list_revoke_restart(serving: Serving, tmp_path: Path) -> None:
    assert (tmp_path / "ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    async with EstClient(serving.url, ca) as client:
        fridge_key = ec.generate_private_key(ec.SECP256R1())
        csr = build_csr(fridge_key, "fridge")
        assert isinstance(await client.simpleenroll(csr, username="fridge", password="999"), Pending)

        code, _, stderr = await est_server("approve", "fridge", "--data-dir", tmp_path, "--pin", "1")
        assert code == 1
        assert "does not match" in stderr
        code, stdout, _ = await est_server("approve", "fridge", "--data-dir", tmp_path, "--pin", "999")
        assert code == 0, stdout
        certificate = await client.simpleenroll(csr, username="fridge", password="999")
        assert isinstance(certificate, x509.Certificate)

    code, stdout, _ = await est_server("list", "--data-dir", tmp_path, "--json")
    listing = json.loads(stdout)
    assert listing["ca_fingerprint"] == serving.fingerprint
    assert [c["appliance"] for c in listing["certificates"]] == ["fridge"]
    assert {a["appliance"] for a in listing["appliances"]} == {"oven", "fridge"}

    code, stdout, _ = await est_server("revoke", "fridge", "--data-dir", tmp_path)
    assert (code, stdout) == (0, "revoked 1 certificate(s)\n")
    assert "stopped" in await serving.stop()

    code, stdout, _ = await est_server("list", "--data-dir", tmp_path)  # offline, from the files
    assert code == 0
    assert "revoked" in stdout

    again = await start(tmp_path)
    assert again.fingerprint == serving.fingerprint
    await again.stop()


async def test_secrets_can_stay_off_the_command_line(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# appliances that enroll unattended\noven:123456\n\n")
    data_dir = tmp_path / "data"
    serving = await start(data_dir, "--users-file", str(users))
    try:
        ca = x509.load_pem_x509_certificate((data_dir / "ca.pem").read_bytes())
        async with EstClient(serving.url, ca) as client:
            oven = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
            assert isinstance(
                await client.simpleenroll(oven, username="oven", password="123456"), x509.Certificate
            )
            fridge = build_csr(ec.generate_private_key(ec.SECP256R1()), "fridge")
            assert isinstance(await client.simpleenroll(fridge, username="fridge", password="999"), Pending)
            code, _, stderr = await est_server("approve", "fridge", "--data-dir", data_dir, "--pin", "-")
            # refused as such, not counted as a wrong PIN
            assert (code, stderr.splitlines()[-1]) == (1, "est-server approve: no PIN on standard input")
            code, _, stderr = await approve_with_pin(data_dir, "fridge", "1")
            assert (code, "does not match" in stderr) == (1, True)
            code, stdout, _ = await approve_with_pin(data_dir, "fridge", "999")
            assert code == 0, stdout
            assert isinstance(
                await client.simpleenroll(fridge, username="fridge", password="999"), x509.Certificate
            )
    finally:
        await serving.stop()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 another program listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        pytest.param(
            ["--users-file", "{dir}/users"],
            "--users-file {dir}/users: appliance 2: appliance id 'Fridge' stands for the same DNS name as an"
            " appliance the hub already knows (names ignore case and '.local'); choose another id",
            id="users file the policy refuses",
        ),
        pytest.param(
            ["--user", "oven:s3cret-one", "--user", ".fridge:s3cret-two"],
            "--user: appliance 2: appliance id must be 1-63 letters, digits",
            id="user with a bad id",
        ),
        pytest.param(
            ["--port", "{port}"], "--host 127.0.0.1 --port {port}: Address already in use", id="port taken"
        ),
        pytest.param(
            ["--port", "{port}", "--loop", "asyncio"],
            "--host 127.0.0.1 --port {port}: Address already in use",
            id="port taken, asyncio's loop",
        ),
        pytest.param(  # a control socket's path is at most 107 bytes
            ["--data-dir", "{dir}/{deep}"],
            "--data-dir {dir}/{deep}: no control socket in it: AF_UNIX path too long",
            id="data directory too deep",
        ),
    ],
)
async def test_a_serve_that_refuses_to_start_says_why_in_one_line_and_never_stopped(
    tmp_path: Path, taken_port: int, arguments: list[str], reason: str
) -> None:
    """ "stopped" tells a supervisor a server stopped cleanly: one that never served has not."""
    (tmp_path / "users").write_text("fridge:s3cret-one\nFridge:s3cret-two\n")
    values = {"dir": tmp_path, "port": taken_port, "deep": "d" * 100}
    serve = ["serve", "--data-dir", "{dir}", "--port", "0", *arguments]
    code, stdout, stderr = await est_server(*(argument.format(**values) for argument in serve))
    assert code == 1
    assert stderr.splitlines()[-1].startswith(reason.format(**values))
    assert "Traceback" not in stderr
    assert "s3cret" not in stderr
    assert stdout == ""  # neither "listening on" nor "stopped"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "ca.pem is there but not ca.key: a damaged data directory, or not est-server's"),
        ("ca.key", "Unable to load PEM file"),
    ],
    ids=["a CA certificate without its key", "a key that is no key"],
)
async def test_a_data_directory_it_did_not_write_stops_serve_and_list_with_a_reason(
    tmp_path: Path, key: str | None, reason: str
) -> None:
    """A ca.pem of another program's (the curl example writes one) is no household CA to start from."""
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    if key is not None:
        (tmp_path / key).write_text("not a key\n")
    for command in (["serve", "--port", "0"], ["list"]):
        code, stdout, stderr = await est_server(*command, "--data-dir", tmp_path)
        assert (code, stdout) == (1, "")
        assert stderr.splitlines()[-1].startswith(
            f"--data-dir {tmp_path}: cannot load what it holds: {reason}"
        )
        assert "Traceback" not in stderr
    left = sorted(await asyncio.to_thread(os.listdir, tmp_path))  # nothing written over, nothing added
    assert left == sorted(["ca.pem", "server.lock", *([key] if key else [])])


async def test_a_data_directory_that_lost_its_ca_is_not_given_a_new_one(tmp_path: Path) -> None:
    """Approvals made under a CA that is gone (a restore that left it out): serve stops, creates nothing."""
    serving = await start(tmp_path, "--user", "oven:123456")
    await serving.stop()
    for name in ("ca.pem", "ca.key", "listener.pem", "listener.key"):
        (tmp_path / name).unlink()
    code, stdout, stderr = await est_server("serve", "--port", "0", "--data-dir", tmp_path)
    assert (code, stdout) == (1, "")
    assert stderr.splitlines()[-1].startswith(f"--data-dir {tmp_path}: the household CA is missing")
    assert "Traceback" not in stderr
    assert not (tmp_path / "ca.pem").exists()


async def test_a_user_given_again_at_restart_is_not_armed_again(tmp_path: Path) -> None:
    """``--user`` pre-registers an appliance once: a restart with the same list must not re-arm it."""
    serving = await start(tmp_path, "--user", "oven:123456", "--user", "fridge:654321")
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    async with EstClient(serving.url, ca) as client:
        oven = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
        assert isinstance(
            await client.simpleenroll(oven, username="oven", password="123456"), x509.Certificate
        )
    await serving.stop()

    again = await start(tmp_path, "--user", "oven:123456", "--user", "fridge:654321")
    try:
        async with EstClient(again.url, ca) as client:
            other_key = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
            assert isinstance(
                await client.simpleenroll(other_key, username="oven", password="123456"), Pending
            )
            fridge = build_csr(ec.generate_private_key(ec.SECP256R1()), "fridge")  # never enrolled: armed
            assert isinstance(
                await client.simpleenroll(fridge, username="fridge", password="654321"), x509.Certificate
            )
    finally:
        said = await again.stop()
    assert "--user oven: oven has enrolled already" in said


async def test_approve_never_lets_a_new_key_pass_over_the_pin_an_appliance_was_paired_with(
    tmp_path: Path,
) -> None:
    serving = await start(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    try:
        async with EstClient(serving.url, ca) as client:
            oven = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
            stranger = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
            assert isinstance(await client.simpleenroll(oven, username="oven", password="123456"), Pending)
            assert isinstance(await client.simpleenroll(stranger, username="oven", password=""), Pending)
            oven_key = public_key_fingerprint(oven.public_key())[:16]
            code, _, stderr = await est_server(
                "approve", "oven", "--key", oven_key, "--pin", "123456", "--data-dir", tmp_path
            )
            assert code == 0, stderr
            code, _, stderr = await est_server("approve", "oven", "--data-dir", tmp_path)
            assert code == 1
            assert "does not bring the proof it was paired with" in stderr
            code, _, stderr = await est_server("approve", "oven", "--pin", "123456", "--data-dir", tmp_path)
            assert code == 1
            assert "sent no PIN" in stderr
            certificate = await client.simpleenroll(oven, username="oven", password="123456")
            assert isinstance(certificate, x509.Certificate)  # the oven's PIN still admits it
    finally:
        await serving.stop()


def test_a_users_file_must_hold_id_and_secret(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("oven:123456\nfridge\n")
    with pytest.raises(SystemExit, match="entry 2 is not ID:SECRET"):
        cli._users_in(users)
    with pytest.raises(SystemExit, match="No such file"):
        cli._users_in(tmp_path / "missing")


@pytest.mark.parametrize(
    ("host", "crl_url", "certified"),
    [
        ("192.168.1.10", "https://192.168.1.10:8443/crl", "192.168.1.10"),
        ("hub.home.arpa", "https://hub.home.arpa:8443/crl", "hub.home.arpa"),
        ("Hub.local", "https://Hub.local:8443/crl", "hub.local"),
        ("fd00::10", "https://[fd00::10]:8443/crl", "fd00::10"),
        ("fe80::1%eth0", "https://[fe80::1%25eth0]:8443/crl", "fe80::1"),
        ("0.0.0.0", "https://oven-hub.local:8443/crl", "oven-hub.local"),
        ("::", "https://oven-hub.local:8443/crl", "oven-hub.local"),
    ],
)
def test_certificates_name_the_crl_where_other_machines_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, crl_url: str, certified: str
) -> None:
    """At --host as given, never at "localhost"; a wildcard --host at the machine's mDNS name."""
    monkeypatch.setattr("socket.gethostname", lambda: "Oven-Hub.fritz.box")
    args = cli.parser().parse_args(["serve", "--data-dir", str(tmp_path), "--host", host])
    config = cli.service_config(args)
    assert cli.open_service(tmp_path, config).crl_url == crl_url
    assert {"localhost", "127.0.0.1"} <= set(config.names.all())  # kept from appliances
    # The listener certificate covers the name the CRL is at, and only home-network names.
    assert certified in config.names.certified().all()
    assert "localhost" not in config.names.certified().all()


@pytest.mark.parametrize("host", ["hub.example", "localhost", "8.8.8.8", "2001:db8::1", "oven-hub"])
def test_a_host_the_certificate_cannot_name_is_refused(tmp_path: Path, host: str) -> None:
    """Clients could not verify the server there: the household CA names the home network only."""
    args = cli.parser().parse_args(["serve", "--data-dir", str(tmp_path), "--host", host])
    with pytest.raises(SystemExit) as refused:
        cli.service_config(args)
    assert str(refused.value) == (
        f"--host {host}: the server's certificate names it on the home network only: give an address"
        " of a private range or loopback, or a name under .local or .home.arpa"
    )


async def test_an_issued_certificate_names_a_crl_its_holder_can_fetch(tmp_path: Path) -> None:
    serving = await start(tmp_path, "--host", "127.0.0.1", "--user", "oven:123456")
    try:
        ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
        async with EstClient(serving.url, ca) as client:
            oven = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
            certificate = await client.simpleenroll(oven, username="oven", password="123456")
            assert isinstance(certificate, x509.Certificate)
            points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            (url,) = [name.value for point in points for name in point.full_name or ()]
            assert url == f"https://127.0.0.1:{serving.port}/crl"
            async with EstClient(url.removesuffix("/crl"), ca) as at_that_url:
                crl = await at_that_url.crl()
        assert crl.issuer == ca.subject
    finally:
        await serving.stop()


async def test_one_server_per_data_directory(serving: Serving, tmp_path: Path) -> None:
    code, _, stderr = await est_server("serve", "--data-dir", tmp_path, "--port", "0")
    assert code != 0
    assert "another est-server" in stderr


async def test_approve_without_a_server_says_why(tmp_path: Path) -> None:
    code, _, stderr = await est_server("approve", "x", "--data-dir", tmp_path)
    assert code == 1
    assert "no est-server is running" in stderr
    code, _, stderr = await est_server("list", "--data-dir", tmp_path)
    assert code == 1
    assert "holds no household CA" in stderr


async def test_sigterm_right_after_the_ready_line_stops_cleanly(tmp_path: Path) -> None:
    """A supervisor may stop the server as soon as it says it listens: that must be a clean stop."""
    server = await start(tmp_path)
    assert "stopped" in await server.stop()


class PowerCut(BaseException):
    """The process dies here (BaseException: nothing on the way may catch it)."""


@pytest.mark.parametrize("writes_before_the_cut", [0, 1, 2, 3])
@pytest.mark.parametrize("moment", ["first start", "listener re-issued for a new host name"])
async def test_a_power_cut_between_pem_files_never_stops_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str, writes_before_the_cut: int
) -> None:
    """The CA and listener live in four files, each written atomically but not all at once."""
    names = ListenerNames.from_hosts(["localhost", "127.0.0.1"])
    config = ServiceConfig("Test", port=0, bind_host="127.0.0.1", names=names)
    if moment != "first start":
        await cli.open_service(tmp_path, config).load()
        config.names = ListenerNames.from_hosts(["oven-hub.local", "localhost", "127.0.0.1"])
    original = storage.write_private_atomically
    writes = 0

    def cut_power(path: Path, data: bytes, *, mode: int = 0o600) -> None:
        nonlocal writes
        if writes == writes_before_the_cut:
            raise PowerCut
        writes += 1
        original(path, data, mode=mode)

    monkeypatch.setattr(cli, "write_private_atomically", cut_power)
    with pytest.raises(PowerCut):
        await cli.open_service(tmp_path, config).load()
    monkeypatch.setattr(cli, "write_private_atomically", original)

    service = cli.open_service(tmp_path, config)  # the next start
    await service.load()
    await service.start()
    try:
        assert service.listener_identity.covers(config.names)
        assert service.ca.issued(service.listener_identity.certificate)
    finally:
        await service.stop()


# --- the PIN exchange ----------------------------------------------------------------------------------


async def waiting_appliance(
    serving: Serving, state_dir: Path, appliance_id: str, pin: str
) -> ApplianceProcess:
    """``scripts/appliance --id ID --pin PIN --server URL --once``, started."""
    return await ApplianceProcess.start(
        *("--id", appliance_id, "--pin", pin, "--server", serving.url, "--once"),
        *("--state-dir", str(state_dir), "--approval-timeout", "120"),
    )


async def approve_with_pin(data_dir: Path, appliance_id: str, pin: str) -> tuple[int, str, str]:
    """``est-server approve ID --pin -`` with the PIN on standard input."""
    return await est_server("approve", appliance_id, "--data-dir", data_dir, "--pin", "-", stdin=f"{pin}\n")


def openssl_verifies(ca: Path, certificate: Path) -> str:
    finished = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), str(certificate)],
        capture_output=True,
        text=True,
        check=False,
    )
    return finished.stdout + finished.stderr


async def test_an_appliance_waits_for_its_pin_then_pairs_through_the_exchange(tmp_path: Path) -> None:
    data_dir, state = tmp_path / "data", tmp_path / "fridge"
    serving = await start(data_dir)
    try:
        fridge = await waiting_appliance(serving, state, "fridge", "246810")
        await fridge.expect("enrolling as fridge through the PIN exchange")
        await fridge.expect("waiting for the owner to type this appliance's PIN")
        code, stdout, _ = await est_server("list", "--data-dir", data_dir, "--json")
        (pending,) = json.loads(stdout)["pending"]
        assert (pending["kind"], pending["state"]) == ("pake", "waiting for its PIN (approve --pin -)")

        code, stdout, stderr = await approve_with_pin(data_dir, "fridge", "246810")
        assert (code, stdout) == (0, "approved fridge: its PIN exchange proved the PIN; it is enrolled\n"), (
            stderr
        )
        assert await fridge.exit_code() == 0, fridge.lines
        assert [
            line for line in fridge.lines if line.startswith("the PIN exchange authenticated the hub's CA")
        ]
    finally:
        said = await serving.stop()
    assert "246810" not in said
    assert "246810" not in (data_dir / "approvals.json").read_text()
    assert openssl_verifies(data_dir / "ca.pem", state / "certificate.pem").endswith(": OK\n")
    assert (state / "ca.pem").read_bytes() == (data_dir / "ca.pem").read_bytes()


async def test_a_mistyped_pin_shows_and_the_right_one_then_pairs(tmp_path: Path) -> None:
    data_dir, state = tmp_path / "data", tmp_path / "fridge"
    serving = await start(data_dir)
    try:
        fridge = await waiting_appliance(serving, state, "fridge", "246810")
        await fridge.expect("waiting for the owner to type this appliance's PIN")
        code, _, stderr = await approve_with_pin(data_dir, "fridge", "246801")
        assert (code, stderr.splitlines()[-1]) == (  # the last line: coverage may warn before it
            1,
            "est-server approve: the PIN does not match fridge's: its PIN exchange failed; approve it again "
            "with the right PIN (2 more tries)",
        )
        await fridge.expect("the PIN exchange failed (401")
        code, stdout, _ = await est_server("list", "--data-dir", data_dir)
        assert "its exchange failed: the PIN did not match; approve it again with the right PIN" in stdout

        code, stdout, stderr = await approve_with_pin(data_dir, "fridge", "246810")
        assert code == 0, stderr
        assert await fridge.exit_code() == 0, fridge.lines
    finally:
        await serving.stop()
    assert openssl_verifies(data_dir / "ca.pem", state / "certificate.pem").endswith(": OK\n")


async def test_a_user_given_to_serve_pairs_through_the_exchange_unattended(tmp_path: Path) -> None:
    data_dir, state = tmp_path / "data", tmp_path / "oven"
    serving = await start(data_dir, "--user", "oven:123456")
    try:
        oven = await waiting_appliance(serving, state, "oven", "123456")
        assert await oven.exit_code() == 0, oven.lines
        assert not [line for line in oven.lines if "waiting for the owner" in line]
    finally:
        await serving.stop()
    saved = json.loads((data_dir / "approvals.json").read_text())
    assert "123456" not in json.dumps(saved)
    (registration,) = saved["registrations"]
    assert registration["verifier"]["method"] == "srp6a-sha512-3072"


async def given_pin(pending: PendingEnrollment, before: PinVerifier | None = None) -> PinVerifier:
    """The verifier of the PIN ``approve`` gives, once the SRP worker made it (another than ``before``)."""
    while (verifier := pending.verifier) is None or verifier == before:
        await asyncio.sleep(0.01)
    return verifier


async def test_approve_pin_says_how_the_next_exchange_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its reply, and serve's output: none came in time, a mistyped PIN, a request that went."""
    service = make_service(tmp_path, listener=cli.ConsoleListener())
    await service.load()
    policy = service.policy
    request = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "fridge"))
    waiting = await policy.exchange_verifier("fridge", request, None)
    assert isinstance(waiting, AwaitingOwner)
    approve = {"command": "approve", "appliance": "fridge", "pin": "246810"}
    try:
        monkeypatch.setattr(cli, "EXCHANGE_WAIT", 0.05)
        reply = await cli._control_command(service, approve)
        assert reply == {
            "ok": True,
            "message": "PIN given for fridge: it enrolls with its next PIN exchange (none came within "
            "0.05 s; `est-server list` shows how it goes)",
        }

        monkeypatch.setattr(cli, "EXCHANGE_WAIT", 30.0)
        mistyped = asyncio.create_task(cli._control_command(service, {**approve, "pin": "246801"}))
        verifier = await given_pin(waiting.pending, waiting.pending.verifier)
        policy.exchange_failed("fridge", request.key_fingerprint, verifier)  # the appliance's proof
        assert await mistyped == {
            "ok": False,
            "error": "the PIN does not match fridge's: its PIN exchange failed; approve it again with the "
            "right PIN (2 more tries)",
        }

        gone = asyncio.create_task(cli._control_command(service, approve))
        await given_pin(waiting.pending)
        policy.withdraw(waiting.pending.request_id)
        assert await gone == {
            "ok": False,
            "error": "the request of fridge stopped waiting meanwhile (see `list`)",
        }
        cli.ConsoleListener().exchange_failed(ExchangeFailure("oven"))  # a pre-registration's PIN
    finally:
        await service.stop()
    assert capsys.readouterr().out.splitlines()[-2:] == [
        "the PIN does not match fridge's: its PIN exchange failed; approve it again with the right PIN "
        "(2 more tries)",
        "the PIN exchange of oven failed: it does not know the PIN the server has",
    ]


# --- the event loop ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "hidden", "said"),
    [
        ("auto", False, "Serving on uvloop"),
        ("auto", True, "uvloop is not installed: serving on asyncio's own event loop"),
        ("asyncio", False, None),
    ],
)
def test_serve_runs_on_uvloop_where_it_is_installed_and_says_which_loop(
    tmp_path: Path, choice: str, hidden: bool, said: str | None
) -> None:
    """uvloop is a dependency of the standalone tools only: where it is missing, asyncio serves."""
    env = environment()
    if hidden:  # as if it were not installed: its import fails
        (tmp_path / "hide").mkdir()
        (tmp_path / "hide" / "uvloop.py").write_text("raise ImportError('not installed')\n")
        env["PYTHONPATH"] = f"{tmp_path / 'hide'}:{env['PYTHONPATH']}"
    server = ServerProcess.start(tmp_path / "data", "--loop", choice, env=env)
    try:
        ca = x509.load_pem_x509_certificate((tmp_path / "data" / "ca.pem").read_bytes())
        context = client_ssl_context(ca)
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert tls.recv(12) == b"HTTP/1.1 200"
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    if said is None:
        assert "uvloop" not in log
    else:
        assert said in log


def test_asking_for_uvloop_where_it_is_missing_stops_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # its import raises ImportError
    with pytest.raises(SystemExit, match="uvloop is not installed"):
        cli.loop_factory("uvloop")
    assert cli.loop_factory("auto") is None
    assert cli.loop_factory("asyncio") is None


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_outside_tcps_range_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    """uvloop would listen on the port modulo 65536, asyncio's loop fail with a traceback."""
    with pytest.raises(SystemExit) as exited:
        cli.parser().parse_args(["serve", "--port", port])
    assert exited.value.code == 2
    assert "a TCP port: 0 (any free one) to 65535" in capsys.readouterr().err


@pytest.mark.parametrize("days", ["0", "-5", "1.5", "year"])
def test_a_lifetime_below_a_day_is_a_usage_error(days: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad command line exits 2 (docs/standalone.md), like any other option argparse refuses."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--data-dir", "unused", "--validity-days", days])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "est-server serve: error: argument --validity-days: whole days, at least 1"
    )


def test_manufacturer_cas_that_cannot_be_read_stop_serve_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "not.pem").write_text("hello\n")
    for path, reason in ((tmp_path / "missing.pem", "No such file"), (tmp_path / "not.pem", "no PEM")):
        args = cli.parser().parse_args(["serve", "--data-dir", str(tmp_path), "--client-ca", str(path)])
        with pytest.raises(SystemExit, match=f"^--client-ca {path}: .*{reason}"):
            cli.service_config(args)


def test_a_data_directory_that_cannot_be_made_stops_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with (
        pytest.raises(SystemExit, match=f"^--data-dir {tmp_path / 'file'}: "),
        cli.exclusive(tmp_path / "file"),
    ):
        pass
