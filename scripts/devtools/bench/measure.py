"""One measurement: a closed-loop run against a target, with the CPU the server and the machine used."""

from __future__ import annotations

from dataclasses import dataclass
import functools
import time

from cryptography import x509

from custom_components.est_pairing.est.wire import PKCS7_MIME

from .loadgen import Endpoint, LoadRun, LoadSpec, run_load
from .servers import ServerProcess, machine_cpu_seconds
from .stats import Throughput, segment_rates
from .workload import csr_bodies, enrollment_headers, first_problem


@dataclass(frozen=True, slots=True)
class Target:
    """Something to load: where, what to send, what a success looks like."""

    name: str
    endpoint: Endpoint
    path: str
    username: str
    password: str
    expect_type: str = PKCS7_MIME
    ca: x509.Certificate | None = None  # check the certificates that come back against it
    server: ServerProcess | None = None  # measure its CPU
    external: bool = False  # a server the bench did not start: if it runs here, "other" CPU is its


@dataclass(frozen=True, slots=True)
class Measurement:
    """One closed-loop run and the CPU it took."""

    target: str
    concurrency: int
    throughput: Throughput
    requests: int  # every request of the run, warm-up and errors included
    seconds: float  # the whole run
    server_cpu_seconds: float | None  # CPU time the server used over the whole run
    load_cpu: float  # cores the load generator used while every client was busy
    other_cpu: float  # cores everything else on the machine used over the run
    notes: tuple[str, ...] = ()
    segments: tuple[float, ...] = ()  # successes per second in each tenth of the run
    steal: float = 0.0  # cores the host gave other guests while this machine's CPUs wanted to run

    @property
    def server_cpu(self) -> float | None:
        """Cores the server used over the run."""
        return None if self.server_cpu_seconds is None else self.server_cpu_seconds / self.seconds

    @property
    def server_cost(self) -> float | None:
        """Server CPU seconds per request."""
        return None if self.server_cpu_seconds is None else self.server_cpu_seconds / self.requests

    @property
    def capacity(self) -> float | None:
        """Requests per second of server CPU: the rate at which one fully busy core would serve them."""
        return self.requests / self.server_cpu_seconds if self.server_cpu_seconds else None

    def line(self) -> str:
        """One line for the report, with its notes below."""
        t = self.throughput
        latency = t.latency
        errors = ", ".join(f"{n} {reason}" for reason, n in sorted(t.errors.items())) or "0"
        server = ""
        if self.server_cpu is not None and self.server_cost is not None:
            server = f"server {self.server_cpu:4.0%} = {self.server_cost * 1e3:.3f} ms/request, "
        text = (
            f"{self.target:<10} c={self.concurrency:<3} {t.rate:7.1f}/s  p50 {ms(latency.p50)}  "
            f"p90 {ms(latency.p90)}  p99 {ms(latency.p99)}  max {ms(latency.max)}  errors {errors}  "
            f"cpu: {server}load {self.load_cpu:4.0%}, other {self.other_cpu:4.0%}, steal {self.steal:4.0%}"
        )
        return "\n    ".join([text, *self.notes])


def ms(seconds: float) -> str:
    """Seconds as milliseconds, fixed width."""
    return f"{seconds * 1e3:6.1f} ms"


def measure(
    target: Target,
    concurrency: int,
    requests: int,
    *,
    processes: int,
    cpus: set[int] | None,
    warmup: float,
) -> tuple[Measurement, LoadRun]:
    """One closed-loop run of ``requests`` fresh-connection requests by ``concurrency`` clients."""
    spec = LoadSpec(
        endpoint=target.endpoint,
        path=target.path,
        headers=enrollment_headers(target.username, target.password),
        bodies=functools.partial(csr_bodies, appliance_id=target.username),
        requests=requests,
        concurrency=concurrency,
        expect_type=target.expect_type,
    )
    meter = _CpuMeter(target.server)
    run = run_load(spec, processes=processes, cpus=cpus, warmup=warmup, on_start=meter.start)
    seconds, server_cpu_seconds, other_cpu, steal = meter.stop(run)
    notes = list(run.notes)
    if target.ca is not None and (problem := first_problem(run.kept, target.ca)) is not None:
        notes.append(f"WRONG ANSWER: {problem}")
    if run.load_cpu > 0.9 * processes:
        notes.append("the load generator was CPU-bound: the server could go faster than this")
    if other_cpu > 0.1 and not target.external:
        notes.append(f"other processes used {other_cpu:.0%} of a CPU meanwhile: figures may be low")
    if steal > 0.1:
        notes.append(f"the host took {steal:.0%} of a CPU away (steal time) meanwhile: figures may be low")
    measurement = Measurement(
        target=target.name,
        concurrency=concurrency,
        throughput=run.throughput(),
        requests=len(run.requests),
        seconds=seconds,
        server_cpu_seconds=server_cpu_seconds,
        load_cpu=run.load_cpu,
        other_cpu=other_cpu,
        notes=tuple(notes),
        segments=segment_rates([r.finished for r in run.requests if r.error is None]),
        steal=steal,
    )
    return measurement, run


class _CpuMeter:
    """CPU used by the server, this process and the whole machine between start() and stop()."""

    def __init__(self, server: ServerProcess | None) -> None:
        self._server = server
        self._start = (0.0, 0.0, 0.0, 0.0, 0.0)

    def _sample(self) -> tuple[float, float, float, float, float]:
        server = self._server.cpu_seconds() if self._server is not None else 0.0
        return time.monotonic(), *machine_cpu_seconds(), server, time.process_time()

    def start(self) -> None:
        self._start = self._sample()

    def stop(self, run: LoadRun) -> tuple[float, float | None, float, float]:
        """(seconds, server CPU seconds, cores used by other processes, cores stolen) since start()."""
        wall, busy, steal, server, own = (b - a for a, b in zip(self._start, self._sample(), strict=True))
        wall = max(wall, 1e-9)
        other = max(0.0, (busy - server - own - run.load_cpu_seconds) / wall)
        return wall, (server if self._server is not None else None), other, steal / wall
