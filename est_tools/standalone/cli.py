"""The standalone EST server command (``scripts/est-server``): same code paths as the integration.

    serve   --data-dir DIR [--host H] [--port P] [--user ID:SECRET]... [--client-ca PEM]...
            [--auto-approve] [--validity-days N] [--name NAME] [--label L]...
    approve ID --data-dir DIR [--key FINGERPRINT] [--pin PIN | --pin -]
    reject  ID --data-dir DIR [--key FINGERPRINT]
    revoke  ID --data-dir DIR
    list    --data-dir DIR [--json]

The running server owns the state; the other commands talk to it over ``DIR/control.sock``. With no
server running, ``list`` and ``revoke`` work on the files directly. An appliance that pairs through
the PIN exchange waits until ``approve ID --pin`` gives its PIN (the server keeps a verifier, never
the PIN); ``approve`` then waits a little for the appliance's next exchange and says how it went.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterator
import contextlib
from datetime import UTC, datetime
import fcntl
import getpass
from importlib.metadata import version
import json
import logging
import os
from pathlib import Path
import signal
import socket
import ssl
import sys
from typing import IO, Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from custom_components.est_pairing.est.errors import EstError, HouseholdCAMissing
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from custom_components.est_pairing.est.homenet import HOME_DOMAINS, MDNS_SUFFIX
from custom_components.est_pairing.est.limits import EXCHANGE_WAIT
from custom_components.est_pairing.est.policy import (
    CredentialKind,
    ExchangeFailure,
    PendingEnrollment,
    PinGiven,
    Registration,
)
from custom_components.est_pairing.est.service import EstService, ServiceConfig, ServiceListener, url_host
from custom_components.est_pairing.est.storage import (
    Document,
    JournalFile,
    JsonFileStore,
    write_private_atomically,
)
from custom_components.est_pairing.est.tls import ListenerNames

_LOGGER = logging.getLogger(__name__)
_PUBLIC = 0o644


class PemDirectoryStore:
    """The CA document as PEM files in the data directory: certificates 0644, keys 0600.

    Each file is written atomically, but the four are not written at once: a crash can land
    between two. Keys are written before their certificates and ``ca.pem`` last among the CA's,
    since its presence means "there is a CA"; a listener certificate and key that do not form a
    pair are dropped on loading, and the service issues a new pair.
    """

    _FILES: ClassVar[dict[tuple[str, str], tuple[str, int]]] = {
        ("ca", "private_key"): ("ca.key", 0o600),
        ("ca", "certificate"): ("ca.pem", _PUBLIC),
        ("listener", "private_key"): ("listener.key", 0o600),
        ("listener", "certificate"): ("listener.pem", _PUBLIC),
    }

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def load(self) -> Document | None:
        """Read the PEM files; None when there is no CA yet."""
        return await asyncio.to_thread(self._load)

    def _load(self) -> Document | None:
        if not (self.directory / "ca.pem").exists():
            return None
        document: dict[str, Any] = {"version": 1}
        for (section, field), (name, _) in self._FILES.items():
            path = self.directory / name
            if path.exists():
                document.setdefault(section, {})[field] = path.read_text()
        if "private_key" not in document.get("ca", {}):
            raise ValueError("ca.pem is there but not ca.key: a damaged data directory, or not est-server's")
        if "listener" in document and not _is_pair(document["listener"]):
            _LOGGER.warning("The listener certificate and key do not match (a save was cut short)")
            del document["listener"]
        return document

    async def save(self, document: Document) -> None:
        """Write each PEM file atomically."""
        await asyncio.to_thread(self._save, document)

    def _save(self, document: Document) -> None:
        for (section, field), (name, mode) in self._FILES.items():
            if section in document:
                write_private_atomically(self.directory / name, document[section][field].encode(), mode=mode)


def _is_pair(section: dict[str, str]) -> bool:
    """Whether a certificate and the private key for its public key are both there."""
    try:
        certificate = x509.load_pem_x509_certificate(section["certificate"].encode())
        key = serialization.load_pem_private_key(section["private_key"].encode(), password=None)
    except (KeyError, ValueError, TypeError):
        return False
    return bool(key.public_key() == certificate.public_key())


def open_service(
    data_dir: Path, config: ServiceConfig, listener: ServiceListener | None = None
) -> EstService:
    """An :class:`EstService` over the data directory's files."""
    return EstService(
        config,
        ca_store=PemDirectoryStore(data_dir),
        policy_store=JsonFileStore(data_dir / "approvals.json"),
        ledger_journal=JournalFile(data_dir / "ledger.jsonl"),
        listener=listener,
    )


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock (released by the kernel even on SIGKILL)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = (data_dir / "server.lock").open("w")
    except OSError as err:
        raise SystemExit(f"--data-dir {data_dir}: {err.strerror}") from err
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SystemExit(f"another est-server is using {data_dir}") from None
    try:
        yield
    finally:
        handle.close()


# --- serve -------------------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM, then say "stopped"; a refusal to start is a SystemExit."""
    data_dir: Path = args.data_dir
    service = open_service(data_dir, service_config(args), ConsoleListener())
    await _load(service, data_dir)
    try:
        await _serve(service, args)
    finally:
        await service.stop()
    print("stopped", flush=True)  # only after serving: a supervisor reads it as a clean stop


async def _load(service: EstService, data_dir: Path) -> None:
    """Load the data directory (or create the CA in it); a one-line SystemExit when it will not do."""
    try:
        await service.load()
    except OSError as err:  # the CA could not be saved: a read-only or full disk
        raise SystemExit(f"--data-dir {data_dir}: {err.strerror or err}") from err
    except HouseholdCAMissing as err:  # never a new CA beside the certificates of the old one
        raise SystemExit(f"--data-dir {data_dir}: {err}") from err
    except (ValueError, TypeError) as err:  # a file in it is damaged, or not one est-server wrote
        raise SystemExit(f"--data-dir {data_dir}: cannot load what it holds: {err}") from err


async def _serve(service: EstService, args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir
    users = [("--user", number, user) for number, user in enumerate(args.user, 1)]
    for path in args.users_file:
        users += [(f"--users-file {path}", number, user) for number, user in enumerate(_users_in(path), 1)]
    notes = []
    for origin, number, user in users:
        appliance_id, _, secret = user.partition(":")
        if _enrolled(service, appliance_id):
            notes.append(
                f"{origin} {appliance_id}: {appliance_id} has enrolled already, so this does not "
                "pre-register it again; a new key of it waits for `est-server approve`"
            )
            continue
        try:
            await service.policy.preregister(appliance_id, secret)
        except EstError as err:  # the reason names the id, never the secret
            raise SystemExit(f"{origin}: appliance {number}: {err}") from err
    try:
        await service.start()
    except OSError as err:  # the port is taken, or the address is not this machine's
        if err.errno is None or isinstance(err, ssl.SSLError):
            raise
        raise SystemExit(f"--host {args.host} --port {args.port}: {os.strerror(err.errno)}") from err
    try:
        control = await _start_control(service, data_dir / "control.sock")
    except OSError as err:  # a socket path is at most 107 bytes
        raise SystemExit(f"--data-dir {data_dir}: no control socket in it: {err.strerror or err}") from err
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # before the ready line: a supervisor may stop us at once
        loop.add_signal_handler(signum, stopped.set)
    print(f"listening on https://{url_host(args.host)}:{service.port}/.well-known/est", flush=True)
    print(f"CA SHA-256 {service.ca.fingerprint}", flush=True)
    for note in notes:  # after the two lines a supervisor waits for
        print(note, flush=True)
    try:
        await stopped.wait()
    finally:
        control.close()
        await control.wait_closed()
        _remove(data_dir / "control.sock")


def _enrolled(service: EstService, appliance_id: str) -> bool:
    """Whether the appliance used a pre-registration, was approved, or ever held a certificate.

    A pre-registration is used once; the users given to ``serve`` are given again at every start,
    and must not arm it again (nor a revoked appliance's). One not yet used is armed again, with
    the secret given now.
    """
    registration = service.policy.registration(appliance_id)
    if registration is not None and not registration.preregistered:
        return True
    return service.ledger.latest(appliance_id) is not None


def service_config(args: argparse.Namespace) -> ServiceConfig:
    """What ``serve``'s arguments ask for.

    The listener certificate covers ``--host`` and 127.0.0.1, names and addresses of the home network
    only (a ``--host`` outside it is refused: clients could not verify the server there). Certificates
    name their CRL at ``--host``; with a wildcard (0.0.0.0, ::) at ``<the machine's host name>.local``,
    which the listener certificate then covers too.
    """
    hosts = [args.host, "localhost", "127.0.0.1"]
    if args.host in {"0.0.0.0", "::", ""}:  # noqa: S104 - the owner asked for every interface
        hosts.insert(0, f"{socket.gethostname().split('.')[0].lower()}{MDNS_SUFFIX}")
    elif not ListenerNames.from_hosts([args.host]).certified().all():
        raise SystemExit(
            f"--host {args.host}: the server's certificate names it on the home network only: give an"
            " address of a private range or loopback, or a name under "
            + " or ".join(f".{domain}" for domain in HOME_DOMAINS)
        )
    return ServiceConfig(
        ca_name=args.name,
        port=args.port,
        bind_host=args.host or None,
        names=ListenerNames.from_hosts(hosts),
        labels=args.label or ("appliance",),
        validity_days=args.validity_days,
        manufacturer_cas=[c for path in args.client_ca for c in _load_certificates(path)],
        auto_approve=args.auto_approve,
    )


class ConsoleListener(ServiceListener):
    """What ``serve`` tells the person running it: requests that wait, and how PIN exchanges went."""

    def pending_added(self, pending: PendingEnrollment) -> None:
        """One line, with the command that approves it."""
        pin = " --pin -" if pending.kind is CredentialKind.PAKE else ""  # its exchange needs the PIN
        print(
            f"waiting for approval: {pending.appliance_id} ({pending.kind.value}) from "
            f"{pending.address or 'unknown'}, key sha256 "
            f"{format_fingerprint(pending.key_fingerprint, groups=4)}"
            f" -- run: est-server approve {pending.appliance_id}{pin} --data-dir DIR",
            flush=True,
        )

    def exchange_failed(self, failure: ExchangeFailure) -> None:
        """An exchange's proof was wrong."""
        print(_failed(failure), flush=True)

    def exchange_approved(self, registration: Registration) -> None:
        """An exchange proved the PIN given for a waiting request."""
        print(_proven(registration), flush=True)


def _failed(failure: ExchangeFailure) -> str:
    appliance_id = failure.appliance_id
    if failure.pending is None:
        return f"the PIN exchange of {appliance_id} failed: it does not know the PIN the server has"
    if failure.attempts_left:
        return (
            f"the PIN does not match {appliance_id}'s: its PIN exchange failed; approve it again with "
            f"the right PIN ({failure.attempts_left} more tries)"
        )
    return (
        f"the PIN does not match {appliance_id}'s: its PIN exchange failed again, and too many PINs "
        "were wrong; the request is gone and the appliance locked out for a while"
    )


def _proven(registration: Registration) -> str:
    return f"approved {registration.appliance_id}: its PIN exchange proved the PIN; it is enrolled"


def _load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as err:
        raise SystemExit(f"--client-ca {path}: {err.strerror}") from err
    except ValueError:
        raise SystemExit(f"--client-ca {path}: no PEM certificates in it") from None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _start_control(service: EstService, path: Path) -> asyncio.Server:
    _remove(path)  # left by a server that was killed; the lock says none is running

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            reply = await _control_command(service, request)
        except (EstError, KeyError, ValueError) as err:
            reply = {"ok": False, "error": str(err)}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
        writer.close()

    previous = os.umask(0o177)
    try:
        return await asyncio.start_unix_server(handle, path)
    finally:
        os.umask(previous)


async def _control_command(service: EstService, request: dict[str, Any]) -> dict[str, Any]:
    command = request["command"]
    if command == "list":
        return {"ok": True, **_listing(service)}
    if command == "revoke":
        records = await service.registrar.revoke_appliance(request["appliance"])
        await _saved(service, f"revoked {len(records)} certificate(s)")
        return {"ok": True, "message": f"revoked {len(records)} certificate(s)"}
    pending = _select_pending(service, request["appliance"], request.get("key"))
    if command == "approve":
        approved = await service.policy.approve(pending.request_id, pin=request.get("pin"))
        if isinstance(approved, PinGiven):
            return await _exchanged(service, pending)
        await _saved(service, f"approved {pending.appliance_id}")
        return {"ok": True, "message": f"approved {pending.appliance_id}; it enrolls on its next retry"}
    if command == "reject":
        service.policy.reject(pending.request_id)
        await _saved(service, f"rejected {pending.appliance_id}")
        return {"ok": True, "message": f"rejected {pending.appliance_id}"}
    raise ValueError(f"unknown command {command}")


async def _exchanged(service: EstService, pending: PendingEnrollment) -> dict[str, Any]:
    """The reply to ``approve --pin`` for an appliance of the PIN exchange: how its next exchange went."""
    appliance_id = pending.appliance_id
    try:
        async with asyncio.timeout(EXCHANGE_WAIT):
            outcome = await service.policy.next_exchange(pending.request_id)
    except TimeoutError:
        return {
            "ok": True,
            "message": f"PIN given for {appliance_id}: it enrolls with its next PIN exchange (none came "
            f"within {EXCHANGE_WAIT:g} s; `est-server list` shows how it goes)",
        }
    if isinstance(outcome, Registration):
        return {"ok": True, "message": _proven(outcome)}
    if isinstance(outcome, ExchangeFailure):
        return {"ok": False, "error": _failed(outcome)}
    return {"ok": False, "error": f"the request of {appliance_id} stopped waiting meanwhile (see `list`)"}


async def _saved(service: EstService, done: str) -> None:
    """Wait until the approvals are saved; a ValueError (a refusal the caller shows) if they cannot be."""
    try:
        await service.flush(check=True)
    except OSError as err:
        raise ValueError(f"{done}, but the approvals could not be saved ({err}); free some space") from err


def _select_pending(service: EstService, appliance: str, key: str | None) -> PendingEnrollment:
    matches = [
        p
        for p in service.policy.pending_requests()
        if appliance in (p.appliance_id, p.identity, p.request_id)
        and (key is None or p.key_fingerprint.startswith(key.lower().replace(":", "").replace(" ", "")))
    ]
    if not matches:
        raise ValueError(f"no pending request from {appliance}")
    if len(matches) > 1:
        raise ValueError(
            f"{len(matches)} keys are waiting for {appliance}; choose one with --key: "
            + ", ".join(format_fingerprint(p.key_fingerprint, groups=4) for p in matches)
        )
    return matches[0]


def _listing(service: EstService) -> dict[str, Any]:
    now = service.now()
    certificates = []
    for appliance_id in service.ledger.appliances():
        for record in service.ledger.for_appliance(appliance_id):
            status = "revoked" if record.revoked else "expired" if record.expired(now) else "valid"
            certificates.append(
                {
                    "serial": format(record.serial_number, "x"),
                    "appliance": record.appliance_id,
                    "subject": record.subject,
                    "expires": record.expires.isoformat(),
                    "status": status,
                }
            )
    return {
        "ca_fingerprint": service.ca.fingerprint,
        "pending": [
            {
                "appliance": p.appliance_id,
                "kind": p.kind.value,
                "state": _state(p),
                "key": p.key_fingerprint,
                "key_type": p.key_description,
                "address": p.address,
                "since": datetime.fromtimestamp(p.first_seen, UTC).isoformat(),
            }
            for p in service.policy.pending_requests()
        ],
        "appliances": [
            {
                "appliance": r.appliance_id,
                "kind": r.kind.value,
                "preregistered": r.preregistered,
                "keys": sorted(r.keys),
            }
            for r in service.policy.registrations()
        ],
        "certificates": certificates,
    }


# --- the other commands -----------------------------------------------------------------------------


async def _ask_server(data_dir: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """Send a command to the running server; None when none is running."""
    try:
        reader, writer = await asyncio.open_unix_connection(data_dir / "control.sock")
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    reply: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    return reply


async def command(args: argparse.Namespace, out: IO[str]) -> int:
    """Approve / reject / revoke / list."""
    request: dict[str, Any] = {"command": args.command}
    if args.command in {"approve", "reject", "revoke"}:
        request["appliance"] = args.appliance
    if args.command in {"approve", "reject"}:
        request["key"] = args.key
    if args.command == "approve":
        request["pin"] = _pin_from_stdin() if args.pin == "-" else args.pin
    reply = await _ask_server(args.data_dir, request)
    if reply is None:
        reply = await _offline(args.data_dir, request)
    if not reply["ok"]:
        print(f"est-server {args.command}: {reply['error']}", file=sys.stderr)
        return 1
    if args.command == "list":
        _print_listing(reply, out, as_json=args.json)
    else:
        print(reply["message"], file=out)
    return 0


async def _offline(data_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    if request["command"] in {"approve", "reject"}:
        return {
            "ok": False,
            "error": f"no est-server is running with {data_dir}; pending requests live in it",
        }
    if not (data_dir / "ca.pem").exists():
        return {"ok": False, "error": f"{data_dir} holds no household CA"}
    with exclusive(data_dir):
        service = open_service(data_dir, ServiceConfig(ca_name="-", port=0))
        await _load(service, data_dir)
        try:
            return await _control_command(service, request)
        except (EstError, KeyError, ValueError) as err:
            return {"ok": False, "error": str(err)}
        finally:
            await service.flush()


def _state(pending: PendingEnrollment) -> str:
    """Where a waiting request stands, in a few words."""
    if pending.kind is not CredentialKind.PAKE:
        return "waiting for approval"
    if pending.pin_given:
        return "PIN given, waiting for its exchange"
    if pending.exchange_failed:
        return "its exchange failed: the PIN did not match; approve it again with the right PIN"
    return "waiting for its PIN (approve --pin -)"


def _print_listing(reply: dict[str, Any], out: IO[str], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({k: v for k, v in reply.items() if k != "ok"}, indent=2), file=out)
        return
    print(f"CA SHA-256 {reply['ca_fingerprint']}", file=out)
    print(f"pending requests ({len(reply['pending'])}):", file=out)
    for p in reply["pending"]:
        print(
            f"  {p['appliance']:<24} {p['kind']:<11} {p['key_type']:<9} "
            f"key {format_fingerprint(p['key'], groups=4)}  from {p['address']}  {p['state']}",
            file=out,
        )
    print(f"appliances ({len(reply['appliances'])}):", file=out)
    for a in reply["appliances"]:
        how = "pre-registered" if a["preregistered"] else f"approved ({a['kind']})"
        print(f"  {a['appliance']:<24} {how}", file=out)
    print(f"certificates ({len(reply['certificates'])}):", file=out)
    for c in reply["certificates"]:
        print(
            f"  {c['serial'][:16]:<16} {c['appliance']:<24} {c['status']:<8} expires {c['expires']}", file=out
        )


def _pin_from_stdin() -> str:
    """The PIN for ``approve --pin -``: asked for without echo on a terminal, else one line read."""
    pin = getpass.getpass("PIN: ") if sys.stdin.isatty() else sys.stdin.readline()
    if not pin.strip():
        # An empty PIN would count as a wrong one, and wrong PINs lock the appliance out.
        raise SystemExit("est-server approve: no PIN on standard input")
    return pin.strip()


def _port(text: str) -> int:
    """A TCP port, or a usage error (uvloop would take 99999 as 34463)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a TCP port: 0 (any free one) to 65535")
    return port


def _days(text: str) -> int:
    """A certificate lifetime in whole days, or a usage error."""
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError("whole days, at least 1")
    return days


def _users_in(path: Path) -> list[str]:
    """The ID:SECRET lines of a users file (blank lines and '#' comments skipped)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise SystemExit(f"--users-file {path}: {err.strerror}") from err
    users = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if bad := [number for number, user in enumerate(users, 1) if ":" not in user]:
        raise SystemExit(f"--users-file {path}: entry {bad[0]} is not ID:SECRET")
    return users


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``serve`` runs on (None: asyncio's default).

    uvloop (libuv) spends less CPU than asyncio's own loop on each TLS connection (scripts/bench);
    it is a dependency of the standalone tools only (Home Assistant chooses its own loop).
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop  # optional: the server runs without it
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        _LOGGER.info("uvloop is not installed: serving on asyncio's own event loop")
        return None
    _LOGGER.info("Serving on uvloop %s", version("uvloop"))
    return uvloop.new_event_loop


# --- entry point --------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    root = argparse.ArgumentParser(prog="est-server", description="Standalone EST server (RFC 7030).")
    commands = root.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the EST server")
    serve_parser.add_argument("--data-dir", type=Path, required=True)
    serve_parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address or name to listen on, and where certificates say the CRL is "
        "(0.0.0.0 or '::': every interface, and the CRL at the machine's host name under .local); "
        "an address of the home network or a name under .local or .home.arpa",
    )
    serve_parser.add_argument("--port", type=_port, default=8443)
    serve_parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="pre-approve an appliance (the server keeps a verifier of the secret, never the secret; it"
        " shows in the process list: see --users-file)",
    )
    serve_parser.add_argument(
        "--users-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="pre-approve the appliances of a file, one ID:SECRET a line (a line starting with '#' "
        "is a comment)",
    )
    serve_parser.add_argument(
        "--client-ca",
        action="append",
        default=[],
        type=Path,
        metavar="PEM",
        help="manufacturer CA that factory certificates may chain to",
    )
    serve_parser.add_argument(
        "--auto-approve", action="store_true", help="approve every well-formed request (test benches)"
    )
    serve_parser.add_argument(
        "--validity-days",
        type=_days,
        default=365,
        help="appliance certificate lifetime (at most 825 days for one with serverAuth)",
    )
    serve_parser.add_argument("--name", default="Standalone", help="the CA is '<name> Household CA'")
    serve_parser.add_argument("--label", action="append", default=[], help="an accepted EST label")
    serve_parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default="auto",
        help="the event loop: uvloop where it is installed (auto), or asyncio's own",
    )
    for name, help_text in (
        ("approve", "approve a pending request"),
        ("reject", "reject a pending request"),
        ("revoke", "revoke an appliance's certificates"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("appliance", metavar="ID")
        sub.add_argument("--data-dir", type=Path, required=True)
        if name != "revoke":
            sub.add_argument("--key", help="fingerprint (prefix) of the key, when several wait")
        if name == "approve":
            sub.add_argument(
                "--pin",
                help="the PIN printed on the appliance: the one it sent, or the one its PIN exchange then "
                "proves ('-': read it from standard input)",
            )
    list_parser = commands.add_parser("list", help="pending requests and issued certificates")
    list_parser.add_argument("--data-dir", type=Path, required=True)
    list_parser.add_argument("--json", action="store_true")
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        with exclusive(args.data_dir):
            asyncio.run(serve(args), loop_factory=loop_factory(args.loop))
        return 0
    return asyncio.run(command(args, sys.stdout))
