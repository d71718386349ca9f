"""Run the abuse table against an EST server and print a verdict per case (what scripts/abuse runs).

    python -m tests.est.abuse                       # starts its own est-server serve on 127.0.0.1
    python -m tests.est.abuse --url https://127.0.0.1:8443 --data-dir DIR [--ca PEM] [--user ID:PIN]

A server given with --url must have been started with ``--user ID:PIN`` (default oven:123456), or
with --auto-approve; --data-dir is its data directory: the ledger is read from it, the owner's
commands (approve, reject, revoke) go to it, and the CA key in it mints one expired certificate.
Exit status: 0 when every case passed, 1 otherwise, 2 when the server cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
import contextlib
from pathlib import Path
import sys
import tempfile
from urllib.parse import urlsplit

from cryptography import x509

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.storage import JournalFile

from .. import forge
from ..standalone import ServerProcess
from .cases import CASES
from .run import Verdict, run_case
from .target import Target


class Unusable(Exception):
    """The server cannot be tested as given (wrong URL, credentials, data directory)."""


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/abuse", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="the server, e.g. https://127.0.0.1:8443 (default: start one)")
    parser.add_argument("--data-dir", type=Path, help="the server's --data-dir (needed with --url)")
    parser.add_argument("--ca", type=Path, help="the household CA certificate (default: DATA_DIR/ca.pem)")
    parser.add_argument("--user", default="oven:123456", help="an ID:PIN the server was started with")
    parser.add_argument("--reserved-name", default="localhost", help="a host name the server answers to")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    args = parser.parse_args(argv)
    if args.url and not args.data_dir:
        parser.error("--url needs --data-dir")
    return args


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, int, Path, ServerProcess | None]]:
    """The server under test: the one given, or a fresh one in a temporary directory."""
    if args.url:
        url = urlsplit(args.url)
        yield url.hostname or "127.0.0.1", url.port or 443, args.data_dir, None
        return
    with tempfile.TemporaryDirectory(prefix="est-abuse-") as directory:
        process = ServerProcess.start(Path(directory) / "data", "--user", args.user)
        print(f"started est-server serve on 127.0.0.1:{process.port} (data in {process.data_dir})")
        try:
            yield "127.0.0.1", process.port, process.data_dir, process
        finally:
            process.kill()  # a no-op once it has stopped


async def prepare(target: Target) -> None:
    """Check the server can be tested, and learn whether the owner approves requests."""
    if not await target.serves():
        raise Unusable("GET /cacerts does not answer 200: check --url and --ca")
    try:
        target.issued_serials()
    except (OSError, ValueError) as err:
        raise Unusable(f"cannot read the ledger in --data-dir: {err}") from None
    answer = await target.enroll(forge.body(forge.build(forge.new_key(), target.user)))
    if answer is None or answer.status != 200:
        got = "no answer" if answer is None else f"{answer.status} {answer.text.strip()}"
        raise Unusable(f"enrolling {target.user} with its PIN gave {got}: start the server with --user")
    probe = target.fresh_id("probe")
    answer = await target.enroll(forge.body(forge.build(forge.new_key(), probe)), user=probe, pin="1")
    target.auto_approve = answer is not None and answer.status == 200
    if not target.auto_approve:
        await target.owner("reject", probe)


async def run(args: argparse.Namespace, host: str, port: int, data_dir: Path) -> list[Verdict]:
    ca_path = args.ca or data_dir / "ca.pem"
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except OSError as err:
        raise Unusable(f"--ca {ca_path}: {err.strerror or err}") from None
    except ValueError:
        raise Unusable(f"--ca {ca_path}: not a PEM certificate") from None
    user, _, pin = args.user.partition(":")
    target = Target(host, port, ca, data_dir, user=user, pin=pin, reserved_name=args.reserved_name)
    await prepare(target)
    print(f"owner approval: {'off (--auto-approve)' if target.auto_approve else 'on'}")
    verdicts = []
    for case in CASES:
        if args.only in case.name:
            verdict = await run_case(target, case)
            print(verdict.line(), flush=True)
            verdicts.append(verdict)
    return verdicts


def state_after(data_dir: Path) -> list[str]:
    """Problems with what is on disk: the CA key must load, the ledger parse, no serial twice."""
    problems = []
    try:
        HouseholdCA.from_pem((data_dir / "ca.pem").read_bytes(), (data_dir / "ca.key").read_bytes())
    except (OSError, ValueError, TypeError) as err:
        problems.append(f"the CA key does not load: {err}")
    try:
        events = JournalFile(data_dir / "ledger.jsonl").read_sync()
    except (OSError, ValueError) as err:
        return [*problems, f"the ledger does not parse: {err}"]
    serials = [event["serial"] for event in events if event["op"] == "issued"]
    if len(serials) != len(set(serials)):
        problems.append("the ledger lists a serial number twice")
    print(f"ledger: parses, {len(serials)} certificates, {len(set(serials))} distinct serials")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    with server(args) as (host, port, data_dir, process):
        try:
            verdicts = asyncio.run(run(args, host, port, data_dir))
        except Unusable as err:
            print(f"scripts/abuse: {err}", file=sys.stderr)
            return 2
        problems = state_after(data_dir)
        if process is not None and (code := process.stop()) != 0:
            problems.append(f"the server did not stop cleanly (exit {code})")
    for problem in problems:
        print(f"FAIL  {problem}")
    failed = sum(not v.passed for v in verdicts)
    skipped = sum(v.got == "skipped" for v in verdicts)
    print(f"{len(verdicts) - failed - skipped} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
