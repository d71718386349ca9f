"""The ``scripts/bench`` command line: options, the phases to run, the summary."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator, Sequence
import contextlib
import dataclasses
import json
import os
from pathlib import Path
import ssl
import sys
import tempfile
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from custom_components.est_pairing.est.wire import EST_PATH
from est_tools.appliance.client import EstClient

from . import instructions, pin_exchange, repeats, two_openssls
from .loadgen import Endpoint
from .measure import Target
from .phases import LOOPS, Bench, Settings, pinned
from .report import judge, report

PHASES = ("limits", "scaling", "stall", "ha-stall", "memory")


def parser() -> argparse.ArgumentParser:
    """Command-line options."""
    root = argparse.ArgumentParser(
        prog="scripts/bench",
        description="EST enrollment benchmarks: throughput, latency, scaling, loop stall, memory "
        "(docs/performance.md).",
    )
    root.add_argument("--quick", action="store_true", help="smaller counts: about 40 s")
    root.add_argument("--only", default=",".join(PHASES), help=f"phases to run, of {','.join(PHASES)}")
    root.add_argument("--requests", type=int, help="requests per throughput measurement (5000; quick 1500)")
    root.add_argument("--concurrency", type=int, default=32, help="clients for the targets (32)")
    root.add_argument("--sweep", help="concurrency levels to sweep (1,8,32,64; quick 1,32); '' for none")
    root.add_argument("--rounds", type=int, help="rounds of each throughput measurement (3; quick 1)")
    root.add_argument("--ledger-sizes", help="certificates in the ledger, for scaling (10,1000,100000)")
    root.add_argument("--compaction-sizes", help="ledgers to compact under the probe (1000,10000,100000)")
    root.add_argument("--stall-enrollments", type=int, help="sequential enrollments under the probe (1000)")
    root.add_argument("--memory-enrollments", type=int, help="enrollments before reading RSS (100000)")
    root.add_argument("--processes", type=int, default=1, help="load generator processes (1)")
    root.add_argument("--server-cpu", default="0", help="CPUs for the server (0), or 'any'")
    root.add_argument("--load-cpus", default="1", help="CPUs for the load generator (1), or 'any'")
    root.add_argument(
        "--loops", default=",".join(LOOPS), help=f"event loops to run est-server on, of {','.join(LOOPS)}"
    )
    root.add_argument(
        "--ha-cpu-baseline",
        type=float,
        metavar="MS",
        help="Home Assistant's CPU per enrollment in an earlier run (ms): judges 'no regression'",
    )
    root.add_argument("--work-dir", type=Path, help="for data directories and server logs")
    root.add_argument("--json", type=Path, help="also write every figure to this file")
    root.add_argument(
        "--two-openssls",
        action="store_true",
        help="instead: the experiment on a CSR check after a TLS handshake (docs/performance.md)",
    )
    root.add_argument(
        "--pake",
        action="store_true",
        help="instead: the PIN exchange's (SRP-6a) CPU on the hub and the appliance, per pysrp backend",
    )
    root.add_argument(
        "--instructions",
        action="store_true",
        help="instead: instructions per bare TLS request and per enrollment on each loop (--loops), "
        f"under valgrind's callgrind, which the host's load does not move (--requests, "
        f"{instructions.REQUESTS}; about 10 min)",
    )
    root.add_argument(
        "--repeats",
        action="store_true",
        help="instead: repeated serverkeygen requests and renewal attempts (--requests, 10000) to the "
        "standalone server; its ledger and RSS before and after",
    )
    other = root.add_argument_group("an RFC 7030 server the bench does not start")
    other.add_argument("--url", help="https://HOST:PORT[/.well-known/est[/LABEL]]")
    other.add_argument("--ca", type=Path, help="its CA (PEM); default: fetched, trusted on first use")
    other.add_argument(
        "--user", help="HTTP Basic user: an appliance id it enrolls without approval, key after key"
    )
    other.add_argument("--password", default="", help="HTTP Basic password")
    return root


def settings_from(args: argparse.Namespace, work_dir: Path) -> Settings:
    """Settings from the options, with the full or the quick defaults."""
    quick = args.quick
    return Settings(
        host="127.0.0.1",
        requests=args.requests or (1500 if quick else 5000),
        concurrency=args.concurrency,
        sweep=_ints(args.sweep if args.sweep is not None else "1,32" if quick else "1,8,32,64"),
        rounds=args.rounds or (1 if quick else 3),
        ledger_sizes=_ints(args.ledger_sizes or ("10,1000,10000" if quick else "10,1000,100000")),
        compaction_sizes=_ints(args.compaction_sizes or ("1000,10000" if quick else "1000,10000,100000")),
        stall_enrollments=args.stall_enrollments or (200 if quick else 1000),
        memory_enrollments=args.memory_enrollments or (10_000 if quick else 100_000),
        processes=args.processes,
        server_cpus=_cpus(args.server_cpu),
        load_cpus=_cpus(args.load_cpus),
        warmup=0.5,
        limit_seconds=1.0 if quick else 3.0,
        work_dir=work_dir,
        stall_exchanges=5 if quick else 20,
        loops=_loops(args.loops),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    if args.two_openssls:
        with pinned(_cpus(args.server_cpu)):
            two_openssls.main()
        return 0
    if args.pake:
        with pinned(_cpus(args.server_cpu)):
            pin_exchange.main(rounds=5 if args.quick else 20)
        return 0
    if args.instructions:
        if missing := instructions.missing_tools():
            raise SystemExit(
                f"--instructions needs valgrind: {', '.join(missing)} not found (apt install valgrind)"
            )
        with _work_dir(args) as work_dir:
            settings = settings_from(args, work_dir)
            print(_preamble(args, settings), flush=True)
            with pinned(settings.load_cpus):
                Bench(settings).instructions(args.requests or instructions.REQUESTS)
        return 0
    if args.repeats:
        with _work_dir(args) as work_dir, pinned(_cpus(args.load_cpus)):
            repeats.run(
                work_dir,
                "127.0.0.1",
                count=args.requests or 10_000,
                concurrency=args.concurrency,
                cpus=_cpus(args.server_cpu),
                say=print,
            )
        return 0
    phases = {phase.strip() for phase in args.only.split(",") if phase.strip()}
    if unknown := phases - set(PHASES):
        raise SystemExit(f"unknown phase(s) {', '.join(sorted(unknown))}: choose from {', '.join(PHASES)}")
    with _work_dir(args) as work_dir:
        settings = settings_from(args, work_dir)
        print(_preamble(args, settings), flush=True)
        bench = Bench(settings)
        bench.machine()
        if args.url:
            bench.external(_external_target(args))
        else:
            for phase in PHASES:
                if phase in phases:
                    method = "limits_and_throughput" if phase == "limits" else phase.replace("-", "_")
                    getattr(bench, method)()
    results = bench.results
    baseline = args.ha_cpu_baseline / 1e3 if args.ha_cpu_baseline else None
    print(report(results, judge(results, settings.concurrency, baseline), settings.concurrency))
    if args.json:
        args.json.write_text(json.dumps(_plain(dataclasses.asdict(results)), indent=1) + "\n")
    return 0


@contextlib.contextmanager
def _work_dir(args: argparse.Namespace) -> Iterator[Path]:
    """``--work-dir`` (made if missing, kept), else a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="est-bench-") as temporary:
        work_dir: Path = args.work_dir or Path(temporary)
        work_dir.mkdir(parents=True, exist_ok=True)
        yield work_dir


def _preamble(args: argparse.Namespace, settings: Settings) -> str:
    return (
        f"EST enrollment bench ({'quick' if args.quick else 'full'}): Python {sys.version.split()[0]}, "
        f"{ssl.OPENSSL_VERSION}; server on CPU {_show(settings.server_cpus)}, "
        f"{settings.processes} load process(es) on CPU {_show(settings.load_cpus)}; "
        f"est-server on {', '.join(settings.loops)}; a fresh TLS connection per request"
    )


def _external_target(args: argparse.Namespace) -> Target:
    if not args.user:
        raise SystemExit(
            "--url needs --user (an appliance id the server enrolls without approval, key after key)"
        )
    parts = urlsplit(args.url)
    if parts.scheme != "https" or not parts.hostname:
        raise SystemExit("--url must look like https://HOST:PORT[/.well-known/est[/LABEL]]")
    base = parts.path.rstrip("/") or EST_PATH
    if args.ca is not None:
        ca = x509.load_pem_x509_certificate(args.ca.read_bytes())
    else:
        bootstrap = asyncio.run(EstClient.fetch_ca(f"https://{parts.netloc}", label=_label(base)))
        print(f"trusting the CA the server presented, on first use: SHA-256 {bootstrap.fingerprint}")
        ca = bootstrap.ca_certificate
    pem = ca.public_bytes(Encoding.PEM).decode()
    endpoint = Endpoint(parts.hostname, parts.port or 443, pem)
    return Target("enroll", endpoint, f"{base}/simpleenroll", args.user, args.password, ca=ca, external=True)


def _label(base: str) -> str | None:
    rest = base.removeprefix(EST_PATH).strip("/")
    return rest or None


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())


def _loops(text: str) -> tuple[str, ...]:
    loops = tuple(loop.strip() for loop in text.split(",") if loop.strip())
    if not loops or set(loops) - set(LOOPS):
        raise SystemExit(f"--loops {text}: choose from {', '.join(LOOPS)}")
    return loops


def _cpus(text: str) -> set[int] | None:
    if text.lower() == "any" or len(os.sched_getaffinity(0)) < 2:
        return None
    return {int(cpu) for cpu in text.split(",")}


def _show(cpus: set[int] | None) -> str:
    return ",".join(map(str, sorted(cpus))) if cpus else "any"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
