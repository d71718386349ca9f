"""The phases of a bench run: limits and throughput, scaling with the ledger, loop stall, memory.

Servers run as separate processes pinned to the server CPU; the load generator runs in worker
processes pinned to the other CPU, so that neither shares a GIL (or a core) with the other. The
standalone server is measured on each event loop of ``Settings.loops`` (``est-server serve --loop``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
import contextlib
from dataclasses import dataclass, field
import multiprocessing
import os
from pathlib import Path
import secrets
import statistics
import time

from cryptography import x509

from custom_components.est_pairing.est.wire import EST_PATH

from . import instructions
from .loadgen import Endpoint, LoadRun
from .loop_lag import LoopLagProbe
from .measure import Measurement, Target, measure, ms
from .servers import ServerProcess, start_server
from .stats import percentile
from .transport import FIXED_PATH
from .workload import BENCH_APPLIANCE, crypto_limit, make_compaction_due, prepare_data_dir

ENROLL_PATH = f"{EST_PATH}/simpleenroll"
_EST_SERVER = "est_tools.standalone"
_TRANSPORT_SERVER = "scripts.devtools.bench.transport"
_COMPACTION_RUN = 20  # enrollments after a restart whose ledger is due for compaction
LOOPS = ("asyncio", "uvloop")  # the event loops est-server runs on (--loop)
BASELINE_LOOP = "asyncio"  # the bare TLS request the enrollment is compared with runs on asyncio's loop


@dataclass(frozen=True, slots=True)
class Settings:
    """How big each measurement is and where things run."""

    host: str
    requests: int  # per throughput measurement
    concurrency: int  # the one the targets are judged at
    sweep: tuple[int, ...]
    rounds: int
    ledger_sizes: tuple[int, ...]
    compaction_sizes: tuple[int, ...]
    stall_enrollments: int
    memory_enrollments: int
    processes: int
    server_cpus: set[int] | None
    load_cpus: set[int] | None
    warmup: float
    limit_seconds: float
    work_dir: Path
    say: Callable[[str], None] = print
    stall_exchanges: int = 20  # pairings through the PIN exchange inside Home Assistant (ha-stall)
    loops: tuple[str, ...] = LOOPS

    def requests_at(self, concurrency: int) -> int:
        """Fewer requests at low concurrency, where each waits for a whole round trip."""
        return min(self.requests, max(300, 250 * concurrency))


@dataclass(frozen=True, slots=True)
class Machine:
    """The CPUs as the benchmarks find them."""

    cpus: int
    parallel_speedup: float  # work done by all CPUs at once / by one alone


@dataclass(frozen=True, slots=True)
class Stall:
    """Event-loop lag next to an in-process EstService while it enrolled."""

    label: str
    enrollments: int
    errors: int
    longest: float  # the longest stall while the enrollments ran, as the loop saw it
    longest_on_cpu: float  # ... less the time the OS ran something else on the loop's CPU
    typical: float | None  # one at a time: the median over enrollments of each one's longest (on CPU)
    p99: float | None  # ... and its 99th percentile
    interval: float  # the probe's period (the figures are accurate to about this)
    sequential: bool
    unit: str = "enrollment"  # what ``enrollments`` counts: enrollments, or pairings by PIN exchange


@dataclass(frozen=True, slots=True)
class Memory:
    """The standalone server's resident memory around a long run."""

    enrollments: int
    rss_before: int
    rss_after: int
    peak_rss: int
    run: Measurement


@dataclass(slots=True)
class Results:
    """Everything one bench run measured (phases that did not run stay empty).

    Dicts ``by loop`` are keyed by the event loop's name.
    """

    machine: Machine | None = None
    crypto_limit: float | None = None
    bare: dict[str, list[Measurement]] = field(default_factory=dict)  # by loop: the bare TLS request
    # The bare TLS request on the baseline loop with twice the clients: at about the rate an enrollment
    # runs at (with the target's clients it waits for delayed acknowledgements, its server half idle).
    bare_busy: list[Measurement] = field(default_factory=list)
    enroll: dict[str, list[Measurement]] = field(default_factory=dict)  # by loop: est-server
    sweep: list[Measurement] = field(default_factory=list)
    scaling: dict[str, dict[int, list[Measurement]]] = field(default_factory=dict)  # by loop, size
    stalls: list[Stall] = field(default_factory=list)
    ha_stalls: list[Stall] = field(default_factory=list)
    ha_cpu: float | None = None  # CPU seconds per enrollment inside Home Assistant, --concurrency at a time
    memory: dict[str, Memory] = field(default_factory=dict)  # by loop


def median(values: Sequence[float | None]) -> float:
    """The median of the known values (0 if none)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else 0.0


# --- the machine ------------------------------------------------------------------------------------------


def machine(seconds: float = 0.5) -> Machine:
    """How many CPUs there are, and how much more work all of them do together than one alone."""
    cpus = sorted(os.sched_getaffinity(0))
    with multiprocessing.get_context("spawn").Pool(len(cpus)) as pool:
        alone = pool.apply(_spin_on, (cpus[0], seconds))
        together = sum(pool.starmap(_spin_on, [(cpu, seconds) for cpu in cpus]))
    return Machine(len(cpus), together / alone if alone else 0.0)


def _spin_on(cpu: int, seconds: float) -> int:
    os.sched_setaffinity(0, {cpu})
    loops = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sum(range(1000))
        loops += 1
    return loops


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Run this process on ``cpus`` for a while."""
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --- the phases ------------------------------------------------------------------------------------------


class Bench:
    """Runs the phases against servers it starts itself, collecting :class:`Results`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.results = Results()
        self.password = secrets.token_urlsafe(16)
        self._directories = 0

    def machine(self) -> None:
        """CPUs and how they share work."""
        self.results.machine = found = machine()
        self.settings.say(
            f"machine: {found.cpus} CPUs; all at once do {found.parallel_speedup:.2f}x the work of one alone"
        )

    def limits_and_throughput(self) -> None:
        """Crypto limit; then the bare TLS request and enrollment on each loop, alternating; the sweep."""
        settings, results = self.settings, self.results
        say = settings.say
        say("crypto limit: CSR load + signature check + certificate build + sign, on the server's CPU")
        service = asyncio.run(prepare_data_dir(settings.work_dir / "crypto", settings.host, certificates=0))
        with pinned(settings.server_cpus):
            results.crypto_limit = crypto_limit(settings.limit_seconds, service.ca)
        say(f"  {results.crypto_limit:7.1f}/s")
        data_dirs = {loop: self._data_dir(10) for loop in settings.loops}  # one est-server each: its lock
        loops = _with_baseline(settings.loops)
        with contextlib.ExitStack() as servers:
            shared = data_dirs[settings.loops[0]]  # the bare servers only read its CA and certificate
            bare, est = {}, {}
            for loop in loops:
                bare[loop] = servers.enter_context(self._server(_TRANSPORT_SERVER, shared, loop))
            for loop in settings.loops:
                est[loop] = servers.enter_context(self._server(_EST_SERVER, data_dirs[loop], loop))
            c = settings.concurrency
            say(
                f"bare TLS request ({', '.join(loops)}) and enrollment ({', '.join(settings.loops)}), c={c}, "
                f"and the bare request ({BASELINE_LOOP}) at c={2 * c}: "
                f"{settings.rounds} round(s) of {settings.requests}"
            )
            for _ in range(settings.rounds):
                for loop, target in bare.items():
                    results.bare.setdefault(loop, []).append(self._measure(target, c, settings.requests))
                results.bare_busy.append(self._measure(bare[BASELINE_LOOP], 2 * c, settings.requests))
                for loop, target in est.items():
                    results.enroll.setdefault(loop, []).append(self._measure(target, c, settings.requests))
            if settings.sweep:
                loop = settings.loops[-1]
                say(f"enrollment by number of concurrent clients ({loop})")
                for concurrency in settings.sweep:
                    results.sweep.append(
                        self._measure(est[loop], concurrency, settings.requests_at(concurrency))
                    )

    def scaling(self) -> None:
        """The enrollment measurement with the ledger holding each of ``ledger_sizes`` certificates."""
        settings = self.settings
        for size in settings.ledger_sizes:
            data_dir = self._data_dir(size)
            for loop in settings.loops:
                settings.say(f"scaling: the ledger holds {size:,} certificates ({loop})")
                with self._server(_EST_SERVER, data_dir, loop) as target:
                    self.results.scaling.setdefault(loop, {})[size] = [
                        self._measure(target, settings.concurrency, settings.requests)
                        for _ in range(settings.rounds)
                    ]

    def stall(self) -> None:
        """Loop lag next to an in-process EstService: one enrollment at a time, many, through compactions."""
        settings = self.settings
        settings.say(
            "event-loop stall: an in-process EstService (the integration's code path), probe on its loop"
        )
        stalls = self.results.stalls
        with pinned(settings.server_cpus):
            stalls.extend(asyncio.run(self._stalls(self._data_dir(10))))
            for size in settings.compaction_sizes:
                data_dir = self._data_dir(size)
                make_compaction_due(data_dir)
                stalls.extend(asyncio.run(self._stalls(data_dir, compaction_of=size)))

    async def _stalls(self, data_dir: Path, *, compaction_of: int | None = None) -> list[Stall]:
        settings = self.settings
        service = await prepare_data_dir(data_dir, settings.host, certificates=0)  # loads what is there
        await service.policy.preregister(BENCH_APPLIANCE, self.password)
        service.policy.auto_approve = True  # every enrollment a new key: a pre-registration admits one
        await service.start()
        target = Target(
            "in-process",
            Endpoint(settings.host, service.port, service.ca.certificate_pem.decode()),
            ENROLL_PATH,
            BENCH_APPLIANCE,
            self.password,
            ca=service.ca.certificate,
        )
        if compaction_of is not None:
            runs = [(f"restart, ledger of {compaction_of:,} due for compaction", 1, _COMPACTION_RUN)]
        else:
            runs = [
                ("one enrollment at a time", 1, settings.stall_enrollments),
                (f"{settings.concurrency} at a time", settings.concurrency, 4 * settings.stall_enrollments),
            ]
        stalls = []
        try:
            if compaction_of is None:
                async with LoopLagProbe() as probe:
                    await asyncio.sleep(1.0)
                idle = Stall(
                    "idle loop, no enrollments",
                    0,
                    0,
                    probe.longest(),
                    probe.longest(exclude_cpu_wait=True),
                    None,
                    None,
                    probe.interval,
                    sequential=True,
                )
                stalls.append(idle)
                settings.say(f"  {idle.label}: longest stall {ms(idle.longest_on_cpu)} ({ms(idle.longest)})")
            for label, concurrency, requests in runs:
                async with LoopLagProbe() as probe:
                    measurement, run = await asyncio.to_thread(self._load, target, concurrency, requests)
                stalls.append(_stall(label, probe, run, sequential=concurrency == 1))
                stall = stalls[-1]
                typical = f", typical enrollment {ms(stall.typical)}" if stall.typical is not None else ""
                settings.say(
                    f"  {label}: longest stall {ms(stall.longest_on_cpu)} ({ms(stall.longest)} with waits "
                    f"for a CPU){typical} ({stall.enrollments} enrollments, {stall.errors} errors"
                    f"{_noise(measurement)})"
                )
        finally:
            await service.stop()
        return stalls

    def ha_stall(self) -> None:
        """Loop lag on Home Assistant's own loop, the integration loaded, while appliances enroll."""
        from .home_assistant import stalls_inside_home_assistant  # the HA harness, only when asked

        settings = self.settings
        settings.say("event-loop stall inside Home Assistant: the integration on its core, probe on its loop")
        runs = [
            ("in Home Assistant, one enrollment at a time", 1, settings.stall_enrollments),
            (
                f"in Home Assistant, {settings.concurrency} at a time",
                settings.concurrency,
                4 * settings.stall_enrollments,
            ),
        ]
        with pinned(settings.server_cpus):
            measured, paired = asyncio.run(
                stalls_inside_home_assistant(
                    runs, self._load, self.password, settings.stall_exchanges, settings.load_cpus
                )
            )
        for label, probe, measurement, run, cpu_seconds in measured:
            sequential = label.endswith("one enrollment at a time")
            stall = _stall(label, probe, run, sequential=sequential)
            self.results.ha_stalls.append(stall)
            cost = cpu_seconds / len(run.requests)
            if not sequential:
                self.results.ha_cpu = cost
            typical = f", typical enrollment {ms(stall.typical)}" if stall.typical is not None else ""
            settings.say(
                f"  {label}: longest stall {ms(stall.longest_on_cpu)} ({ms(stall.longest)} with waits "
                f"for a CPU){typical}; Home Assistant's CPU {cost * 1e3:.3f} ms per enrollment "
                f"({stall.enrollments} enrollments, {stall.errors} errors{_noise(measurement)})"
            )
        if paired is not None:
            stall = _exchange_stall("in Home Assistant, pairing by PIN exchange", *paired)
            self.results.ha_stalls.append(stall)
            settings.say(
                f"  {stall.label}: longest stall {ms(stall.longest_on_cpu)} ({ms(stall.longest)} with waits "
                f"for a CPU), typical pairing {ms(stall.typical or 0.0)} ({stall.enrollments} pairings, "
                "each: the request, its card, the PIN typed, the proof, the certificate, the device)"
            )

    def memory(self) -> None:
        """RSS of the standalone server before and after ``memory_enrollments`` enrollments, per loop."""
        settings = self.settings
        count = settings.memory_enrollments
        for loop in settings.loops:
            settings.say(
                f"memory: the standalone server's RSS around {count:,} enrollments, c={settings.concurrency}"
                f" ({loop})"
            )
            with self._server(_EST_SERVER, self._data_dir(0), loop) as target:
                assert target.server is not None  # noqa: S101 - _server always sets it
                before = target.server.rss()
                run = self._measure(target, settings.concurrency, count)
                memory = Memory(count, before, target.server.rss(), target.server.peak_rss(), run)
            self.results.memory[loop] = memory
            settings.say(
                f"  RSS {memory.rss_before / 2**20:.1f} MiB at start, {memory.rss_after / 2**20:.1f} MiB "
                f"after (peak {memory.peak_rss / 2**20:.1f} MiB)"
            )

    def external(self, target: Target) -> None:
        """Throughput and latency of a server the bench did not start (no CPU or memory figures)."""
        settings = self.settings
        settings.say(f"enrolling with {target.endpoint.authority}{target.path}")
        for concurrency in settings.sweep or (settings.concurrency,):
            self.results.sweep.append(self._measure(target, concurrency, settings.requests_at(concurrency)))

    def instructions(self, requests: int) -> dict[str, float]:
        """Instructions per bare TLS request and per enrollment on each loop, under callgrind.

        Returns them by measurement name (``bare asyncio``, ``enroll uvloop``...), as printed.
        """
        settings, counts = self.settings, {}
        data_dir = self._data_dir(10)
        settings.say(
            f"instructions per request under callgrind: {requests} requests at {instructions.CONCURRENCY} "
            f"clients after {instructions.WARMUP} to warm up (each server takes a minute or two)"
        )
        for module in (_TRANSPORT_SERVER, _EST_SERVER):
            for loop in _with_baseline(settings.loops) if module == _TRANSPORT_SERVER else settings.loops:
                out = settings.work_dir / f"callgrind-{module.rsplit('.', 1)[-1]}-{loop}.out"
                with self._server(module, data_dir, loop, wrapper=instructions.callgrind(out)) as target:
                    assert target.server is not None  # noqa: S101 - _server always sets it
                    self._load(target, instructions.CONCURRENCY, instructions.WARMUP)
                    instructions.zero(target.server.pid)
                    _, run = self._load(target, instructions.CONCURRENCY, requests)
                    total = instructions.dump(target.server.pid, out)
                if failed := sum(request.error is not None for request in run.requests):
                    raise RuntimeError(f"{target.name}: {failed} of {len(run.requests)} requests failed")
                counts[target.name] = total / len(run.requests)
                baseline = counts.get(f"bare {BASELINE_LOOP}")
                versus = (
                    f" = {counts[target.name] / baseline:.2f}x bare {BASELINE_LOOP}"
                    if baseline and target.name != f"bare {BASELINE_LOOP}"
                    else ""
                )
                settings.say(f"  {target.name:14} {counts[target.name] / 1e6:5.2f} M instructions{versus}")
        return counts

    # --- helpers ------------------------------------------------------------------------------------------

    def _data_dir(self, certificates: int) -> Path:
        self._directories += 1
        path = self.settings.work_dir / f"data-{self._directories}-{certificates}"
        started = time.monotonic()
        asyncio.run(prepare_data_dir(path, self.settings.host, certificates=certificates))
        self.settings.say(
            f"  ({path.name}: a CA and {certificates:,} issued certificates, "
            f"prepared in {time.monotonic() - started:.1f} s, not timed)"
        )
        return path

    @contextlib.contextmanager
    def _server(
        self, module: str, data_dir: Path, loop: str = BASELINE_LOOP, wrapper: Sequence[str] = ()
    ) -> Iterator[Target]:
        """A server process over ``data_dir`` on event loop ``loop``, as a target to load.

        ``wrapper``: a command to run it under (valgrind's), which may take minutes to start it.
        """
        settings = self.settings
        if module == _EST_SERVER:
            args = ["serve", "--data-dir", str(data_dir), "--host", settings.host, "--port", "0"]
            # Every enrollment is a new key of the same appliance: a pre-registration admits only the
            # first (its secret is still checked for every request), the rest the bench approves.
            args += ["--user", f"{BENCH_APPLIANCE}:{self.password}", "--auto-approve"]
        else:
            args = ["--data-dir", str(data_dir), "--host", settings.host, "--port", "0"]
        args += ["--loop", loop]
        log = data_dir.parent / f"{data_dir.name}-{module.rsplit('.', 1)[-1]}-{loop}.log"
        server: ServerProcess = start_server(
            module,
            args,
            log=log,
            cpus=settings.server_cpus,
            wrapper=wrapper,
            start_timeout=600 if wrapper else 120,
        )
        try:
            pem = (data_dir / "ca.pem").read_text()
            endpoint = Endpoint(server.host, server.port, pem)
            if module == _EST_SERVER:
                ca = x509.load_pem_x509_certificate(pem.encode())
                name, path = f"enroll {loop}", ENROLL_PATH
            else:
                name, path, ca = f"bare {loop}", FIXED_PATH, None
            yield Target(name, endpoint, path, BENCH_APPLIANCE, self.password, ca=ca, server=server)
        finally:
            server.stop()

    def _measure(self, target: Target, concurrency: int, requests: int) -> Measurement:
        measurement, _ = self._load(target, concurrency, requests)
        self.settings.say(f"  {measurement.line()}")
        return measurement

    def _load(self, target: Target, concurrency: int, requests: int) -> tuple[Measurement, LoadRun]:
        settings = self.settings
        return measure(
            target,
            concurrency,
            requests,
            processes=settings.processes,
            cpus=settings.load_cpus,
            warmup=settings.warmup,
        )


def _with_baseline(loops: Sequence[str]) -> tuple[str, ...]:
    """The loops the bare TLS request runs on: those measured, and the baseline's first."""
    return (BASELINE_LOOP, *(loop for loop in loops if loop != BASELINE_LOOP))


def _noise(measurement: Measurement) -> str:
    """What else took the machine's CPUs while a stall was measured: other processes, and the host.

    The probe sees the loop's thread wait for a CPU the kernel gave to another process, not one the
    hypervisor gave to another guest: with steal time about, long stalls may be the host's.
    """
    return (
        f"; other processes used {measurement.other_cpu:.0%} of a CPU meanwhile, "
        f"the host took {measurement.steal:.0%} (steal time)"
    )


def _exchange_stall(label: str, probe: LoopLagProbe, windows: Sequence[tuple[float, float]]) -> Stall:
    """The stalls while appliances paired through the PIN exchange one after another (``windows``)."""
    start, end = windows[0][0], windows[-1][1]
    own = [probe.longest(since, until, exclude_cpu_wait=True) for since, until in windows]
    return Stall(
        label,
        len(windows),
        0,  # a pairing that failed stops the bench
        probe.longest(start, end),
        probe.longest(start, end, exclude_cpu_wait=True),
        percentile(own, 50),
        percentile(own, 99),
        probe.interval,
        sequential=True,
        unit="pairing",
    )


def _stall(label: str, probe: LoopLagProbe, run: LoadRun, *, sequential: bool) -> Stall:
    """The stalls while ``run`` went on; one at a time, each enrollment's own longest too."""
    requests = sorted(run.requests, key=lambda r: r.started)
    errors = sum(r.error is not None for r in requests)
    start, end = requests[0].started, max(r.finished for r in requests)
    longest, on_cpu = probe.longest(start, end), probe.longest(start, end, exclude_cpu_wait=True)
    if not sequential:
        return Stall(label, len(requests), errors, longest, on_cpu, None, None, probe.interval, sequential)
    # Each enrollment owns the time until the next one starts: what it left behind (ledger writes,
    # compaction) runs after its answer went out.
    ends = [r.started for r in requests[1:]] + [end]
    own = [
        probe.longest(r.started, until, exclude_cpu_wait=True)
        for r, until in zip(requests, ends, strict=True)
    ]
    typical, unlucky = percentile(own, 50), percentile(own, 99)
    return Stall(label, len(requests), errors, longest, on_cpu, typical, unlucky, probe.interval, sequential)
