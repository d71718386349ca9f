"""The simulated appliance (``scripts/appliance``): find the hub, enroll, keep the certificate fresh.

    appliance --id ID [--pin PIN [--legacy-basic]] [--state-dir DIR] [--server URL | --qr PAYLOAD]
              [--ca-fingerprint HEX] [--factory-cert PEM --factory-key PEM] [--name N] [--model M]
              [--manufacturer M] [--serial S] [--once] [--renew-after SECONDS] [--discovery-timeout S]
              [--approval-timeout S]

With --pin it pairs through the PIN exchange (SRP-6a): the PIN never leaves it, and the CA it pins
comes from the hub's answer, which the exchange authenticates. It sends the PIN no other way, unless
--legacy-basic lets it use HTTP Basic with a hub that does not offer the exchange.

Exit codes (one line on stderr says why):
    0  done (--once) or stopped by SIGINT/SIGTERM
    1  any other failure (the server broke the protocol, unreadable state directory)
    2  bad command line
    3  no EST server found (mDNS), or none at --server (unreachable, or not answering as one)
    4  CA fingerprint mismatch (not the CA given or pinned)
    5  refused: the owner rejected this appliance, the server's policy forbids the request, or the
       server drops the TLS handshake with the factory certificate (it does not trust its issuer)
    6  locked out after too many wrong PINs
    7  the certificate (or key) was revoked
    8  the owner did not approve in time (--approval-timeout)
    9  wrong PIN (HTTP Basic)
    10 the PIN exchange kept failing: the hub's PIN is not the appliance's, or the hub is not the household's
    11 the hub does not offer the PIN exchange (and --legacy-basic was not given)

Rejected (5) or revoked (7), it deletes its key and certificate but keeps the pinned CA: running it
again asks the owner to approve a new key.
"""

from __future__ import annotations

import argparse
import asyncio
from enum import IntEnum
import itertools
import logging
from pathlib import Path
import signal
import string
import sys
from typing import Final

import aiohttp
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from custom_components.est_pairing.est.csr import ApplianceDetails
from custom_components.est_pairing.est.errors import (
    ApprovalTimeout,
    AuthenticationRequired,
    CertificateRevoked,
    EstError,
    ExchangeFailed,
    ExchangeNotOffered,
    FingerprintMismatch,
    LockedOut,
    NotAllowed,
    Rejected,
    ServerNotFound,
)
from custom_components.est_pairing.est.issuance import check_appliance_id

from .agent import Appliance, ApplianceConfig, FactoryIdentity
from .browse import EstServer, server_from_qr_payload, server_from_url
from .client import EstClient


class ExitCode(IntEnum):
    """What the process's exit status means (documented in the module docstring and --help)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NO_SERVER = 3
    FINGERPRINT_MISMATCH = 4
    REJECTED = 5
    LOCKED_OUT = 6
    REVOKED = 7
    NOT_APPROVED = 8
    WRONG_PIN = 9
    EXCHANGE_FAILED = 10
    NO_EXCHANGE = 11


# Checked in method resolution order, so the most specific class wins (CertificateRevoked is a NotAllowed).
OUTCOMES: Final[dict[type[EstError], tuple[ExitCode, str]]] = {
    ServerNotFound: (ExitCode.NO_SERVER, "no server"),
    FingerprintMismatch: (ExitCode.FINGERPRINT_MISMATCH, "CA fingerprint mismatch"),
    CertificateRevoked: (ExitCode.REVOKED, "revoked"),
    NotAllowed: (ExitCode.REJECTED, "refused"),
    LockedOut: (ExitCode.LOCKED_OUT, "locked out"),
    ApprovalTimeout: (ExitCode.NOT_APPROVED, "not approved"),
    AuthenticationRequired: (ExitCode.WRONG_PIN, "wrong PIN"),
    ExchangeFailed: (ExitCode.EXCHANGE_FAILED, "PIN exchange failed"),
    ExchangeNotOffered: (ExitCode.NO_EXCHANGE, "no PIN exchange"),
}
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
_ADVICE: Final[dict[ExitCode, str]] = {
    ExitCode.LOCKED_OUT: "wait, then run again with the PIN printed on the appliance",
    ExitCode.EXCHANGE_FAILED: "check the PIN; the owner may type it again, then run again",
}
# A rejected or revoked key can never be approved again: the appliance forgets it (and its
# certificate) but keeps the pinned CA, so that running it again asks the same hub with a new key.
_NEW_KEY_ADVICE: Final = (
    "its key and certificate are discarded{pinned}; to pair again, run again: the owner approves a new key"
)


# What a serialNumber (a PrintableString, RFC 5280 appendix A) may hold.
_PRINTABLE: Final = frozenset(string.ascii_letters + string.digits + " '()+,-./:=?")


def outcome(error: EstError) -> tuple[ExitCode, str]:
    """The exit code and the one-line message for a library error."""
    code, what = next(
        (OUTCOMES[cls] for cls in type(error).__mro__ if cls in OUTCOMES), (ExitCode.FAILED, "failed")
    )
    if isinstance(error, LockedOut):
        return code, f"{what}: {error} (retry after {error.retry_after} s)"
    return code, f"{what}: {error}"


async def run(appliance: Appliance, *, once: bool) -> int:
    """Run until done (``once``), stopped by a signal, or refused; the exit code."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("run() must run as an asyncio task")
    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(appliance.store.check_writable)
    except OSError as err:
        print(
            f"appliance: failed: --state-dir {appliance.store.directory}: {err.strerror or err}",
            file=sys.stderr,
            flush=True,
        )
        return ExitCode.FAILED
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, task.cancel)
    try:
        await appliance.run(once=once)
    except asyncio.CancelledError:
        print("stopped", flush=True)
        return ExitCode.OK
    except EstError as err:
        if isinstance(err, ServerNotFound) and await _refuses_factory_certificate(appliance):
            err = NotAllowed(
                f"{err}: the server answers without the factory certificate but drops the connection "
                "that presents it, so it does not trust the certificate's issuer (the owner adds the "
                "manufacturer's CA in the integration's options; --factory-cert lists the certificate "
                "first, then its intermediates)"
            )
        code, message = outcome(err)
        advice = _ADVICE.get(code, "")
        if isinstance(err, Rejected | CertificateRevoked):
            try:
                await asyncio.to_thread(appliance.store.discard_credentials)
                ca = appliance.store.ca_path  # none yet if it pairs through the PIN exchange
                pinned = f", the CA stays pinned in {ca}" if await asyncio.to_thread(ca.exists) else ""
                advice = _NEW_KEY_ADVICE.format(pinned=pinned)
            except OSError as failed:
                advice = (
                    f"its key and certificate could not be discarded ({failed.strerror or failed}): "
                    f"remove them from {appliance.store.directory} but keep {appliance.store.ca_path.name}"
                )
        print(f"appliance: {message}" + (f"; {advice}" if advice else ""), file=sys.stderr, flush=True)
        return code
    except (OSError, ValueError, TypeError) as err:  # the state directory or a PEM file is unusable
        print(f"appliance: failed: {err}", file=sys.stderr, flush=True)
        return ExitCode.FAILED
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
    return ExitCode.OK


async def _refuses_factory_certificate(appliance: Appliance) -> bool:
    """Whether a server that dropped the handshake with the factory certificate answers without it.

    The server closes such a handshake without a TLS alert (TLS 1.3 only after the request was sent),
    so the dropped connection alone looks like a server gone away; one more request tells them apart.
    """
    if appliance.config.factory is None or (connection := appliance.connection) is None:
        return False
    server, ca = connection
    try:
        async with EstClient(server.base_url, ca, label=server.label, request_timeout=10) as client:
            await client.cacerts()
    except (EstError, aiohttp.ClientError, OSError, TimeoutError):
        return False
    return True


def parser() -> argparse.ArgumentParser:
    """Command-line arguments."""
    root = argparse.ArgumentParser(
        prog="appliance",
        description="A simulated appliance: finds the EST server over mDNS (_est._tcp), enrolls for a "
        "certificate from the household CA, and renews it at two thirds of its lifetime.",
        epilog="exit codes: "
        + ", ".join(f"{code.value} {code.name.lower().replace('_', ' ')}" for code in ExitCode)
        + ". scripts/appliance --isolated runs it inside the network namespace of "
        "scripts/develop --isolated.",
    )
    who = root.add_argument_group("identity")
    who.add_argument("--id", dest="appliance_id", help="appliance id (the certificate's CN)")
    who.add_argument(
        "--pin",
        default="",
        help="the PIN printed on the appliance, proved through the PIN exchange; empty: the owner compares "
        "fingerprints",
    )
    who.add_argument(
        "--legacy-basic",
        action="store_true",
        help="with a hub that does not offer the PIN exchange, send the PIN in HTTP Basic (a server that "
        "is not the household hub could learn it)",
    )
    who.add_argument(
        "--factory-cert",
        type=Path,
        metavar="PEM",
        help="factory certificate (TLS client), then any manufacturer intermediates above it",
    )
    who.add_argument("--factory-key", type=Path, metavar="PEM", help="its private key")
    who.add_argument("--name", help="friendly name (id-at-name)")
    who.add_argument("--model", help="model (OU)")
    who.add_argument("--manufacturer", help="manufacturer (O)")
    who.add_argument("--serial", help="serial number (serialNumber)")
    where = root.add_argument_group("server")
    where.add_argument("--server", metavar="URL", help="https://HOST:PORT instead of browsing mDNS")
    where.add_argument(
        "--qr", metavar="PAYLOAD", help="est://HOST:PORT/.well-known/est?sha256=... (server and CA)"
    )
    where.add_argument(
        "--ca-fingerprint", metavar="HEX", help="SHA-256 of the household CA, as Home Assistant shows it"
    )
    where.add_argument("--discovery-timeout", type=float, default=10.0, metavar="SECONDS")
    run_group = root.add_argument_group("running")
    run_group.add_argument(
        "--state-dir", type=Path, help="key, certificate and pinned CA (default: ./appliance-state/ID)"
    )
    run_group.add_argument("--once", action="store_true", help="exit once it holds a valid certificate")
    run_group.add_argument(
        "--renew-after",
        type=float,
        metavar="SECONDS",
        help="renew this long after storing a certificate instead of at 2/3 of its lifetime (demos, tests)",
    )
    run_group.add_argument("--approval-timeout", type=float, default=3600.0, metavar="SECONDS")
    return root


def config_from(args: argparse.Namespace) -> ApplianceConfig:
    """Check the arguments and build the configuration; ValueError says what is wrong."""
    factory = _factory_identity(args.factory_cert, args.factory_key)
    appliance_id = args.appliance_id or (factory.appliance_id if factory else None)
    if appliance_id is None:
        raise ValueError("--id is required (unless a factory certificate names the appliance)")
    if factory is not None and appliance_id != factory.appliance_id:
        raise ValueError(f"the factory certificate names this appliance {factory.appliance_id!r}")
    try:
        check_appliance_id(appliance_id)
    except EstError as err:
        raise ValueError(str(err)) from None
    if args.serial is not None and (not args.serial or set(args.serial) - _PRINTABLE):
        raise ValueError(
            "--serial: letters, digits, spaces and ' ( ) + , - . / : = ? only (an X.509 PrintableString)"
        )
    config = ApplianceConfig(
        appliance_id=appliance_id,
        state_dir=args.state_dir or Path("appliance-state") / appliance_id,
        pin=args.pin,
        factory=factory,
        details=ApplianceDetails(
            name=args.name, model=args.model, manufacturer=args.manufacturer, serial_number=args.serial
        ),
        server=_server(args),
        ca_fingerprint=args.ca_fingerprint or None,
        legacy_basic=args.legacy_basic,
        discovery_timeout=args.discovery_timeout,
        approval_timeout=args.approval_timeout,
        renew_after=args.renew_after,
    )
    _ = config.expected_ca_fingerprint  # a malformed fingerprint, or one the QR payload contradicts
    return config


def _server(args: argparse.Namespace) -> EstServer | None:
    """--server, or --qr (whose fingerprint is out of band: the appliance requires it), or None."""
    if args.qr and args.server:
        raise ValueError("give --server or --qr, not both")
    if args.qr:
        return server_from_qr_payload(args.qr)
    return server_from_url(args.server) if args.server else None


def _factory_identity(certificate: Path | None, key: Path | None) -> FactoryIdentity | None:
    if certificate is None and key is None:
        return None
    if certificate is None or key is None:
        raise ValueError("--factory-cert and --factory-key go together")
    try:
        chain = x509.load_pem_x509_certificates(certificate.read_bytes())
    except ValueError:
        raise ValueError(f"{certificate} holds no PEM certificate") from None
    try:
        private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (TypeError, ValueError, UnsupportedAlgorithm):  # TypeError: it is encrypted
        raise ValueError(f"{key} is not an unencrypted PEM private key") from None
    leaf, *intermediates = chain
    if leaf.public_key() != private_key.public_key():
        raise ValueError(
            f"the first certificate in {certificate} is not the one for {key} "
            "(the factory certificate comes first, then its manufacturer intermediates)"
        )
    for lower, upper in itertools.pairwise(chain):
        if lower.issuer != upper.subject:
            raise ValueError(
                f"{certificate}: {upper.subject.rfc4514_string()} did not issue "
                f"{lower.subject.rfc4514_string()} (list the certificate, then each issuer in turn)"
            )
    return FactoryIdentity(leaf, private_key, tuple(intermediates))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    arguments = parser()
    args = arguments.parse_args(argv)
    try:
        config = config_from(args)
    except (OSError, ValueError) as err:
        arguments.error(str(err))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    appliance = Appliance(config, lambda message: print(message, flush=True))
    return asyncio.run(run(appliance, once=args.once))
