"""The load generator: N concurrent clients, each request on a fresh TLS connection, in worker processes.

Request bodies are made in the workers before the clock starts, by a picklable factory (so this module
needs neither ``cryptography`` nor the EST library); the clients are :class:`~.exchanges.Clients`.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import functools
import multiprocessing
from multiprocessing.synchronize import Barrier
import os
import queue
import ssl
import time

from .exchanges import Answer, Clients, http_request
from .stats import Request, Throughput, Window

type BodyFactory = Callable[[int], list[bytes]]  # count -> that many request bodies

_START_TIMEOUT = 600.0  # workers make their request bodies before the start: 10^5 CSRs take a while


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect and how to check the server: ``ca_pem`` None skips verification."""

    host: str
    port: int
    ca_pem: str | None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context like the EST reference client's: TLS 1.2+, server checked against the CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ca_pem is None:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.load_verify_locations(cadata=self.ca_pem)
        return context

    @property
    def authority(self) -> str:
        """``host:port`` for the Host header."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One closed-loop run: ``requests`` POSTs to ``path`` by ``concurrency`` clients."""

    endpoint: Endpoint
    path: str
    headers: tuple[tuple[str, str], ...]
    bodies: BodyFactory
    requests: int
    concurrency: int
    expect_type: str  # the media type of a successful answer
    timeout: float = 30.0
    keep: int = 4  # successful (request, response body) pairs to return for checking

    def share(self, part: int, parts: int) -> LoadSpec:
        """The clients and requests of worker ``part`` of ``parts``."""
        return LoadSpec(
            endpoint=self.endpoint,
            path=self.path,
            headers=self.headers,
            bodies=self.bodies,
            requests=_split(self.requests, part, parts),
            concurrency=max(1, _split(self.concurrency, part, parts)),
            expect_type=self.expect_type,
            timeout=self.timeout,
            keep=self.keep,
        )


@dataclass(slots=True)
class WorkerReport:
    """What one worker process measured (monotonic clock, shared by every process on Linux)."""

    started: float
    drained: float  # the last request was handed to a client: from here on, clients fall idle
    starts: array.array[float]
    finishes: array.array[float]
    errors: dict[int, str]
    kept: list[tuple[bytes, bytes]]  # (request body, response body)
    cpu_seconds: float  # this process's CPU time between start and drain
    cpu_total: float  # ... and between start and the last answer


@dataclass(slots=True)
class LoadRun:
    """Every worker's report, combined."""

    requests: list[Request]
    window: Window
    kept: list[tuple[bytes, bytes]]
    load_cpu: float  # CPU the load generator used while every client was busy, in cores
    load_cpu_seconds: float  # CPU time the load generator used in the whole run
    notes: list[str] = field(default_factory=list)

    def throughput(self) -> Throughput:
        """Rate, latency and errors inside the steady-state window."""
        return Throughput.of(self.requests, self.window)


def run_load(
    spec: LoadSpec,
    *,
    processes: int = 1,
    cpus: set[int] | None = None,
    warmup: float = 0.5,
    on_start: Callable[[], None] | None = None,
) -> LoadRun:
    """Run ``spec`` in ``processes`` worker processes (pinned to ``cpus``) and combine their reports.

    Blocks; ``on_start`` runs the moment every worker is ready and the clocks start.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    results: multiprocessing.Queue[WorkerReport | str] = context.Queue()
    workers = [
        context.Process(
            target=_worker_main,
            args=(spec.share(part, processes), barrier, results, cpus),
            name=f"est-bench-load-{part}",
            daemon=True,
        )
        for part in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(_START_TIMEOUT)
        if on_start is not None:
            on_start()
        reports = [_next_report(results, workers) for _ in workers]
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    return _combine(reports, warmup)


def _next_report(
    results: multiprocessing.Queue[WorkerReport | str], workers: Sequence[multiprocessing.process.BaseProcess]
) -> WorkerReport:
    """The next report; workers time their own requests out, so they always report unless they die."""
    while True:
        try:
            report = results.get(timeout=1.0)
        except queue.Empty:
            if not any(w.is_alive() for w in workers):
                raise RuntimeError("a load worker died without reporting") from None
            continue
        if isinstance(report, WorkerReport):
            return report
        raise RuntimeError(f"a load worker failed: {report}")


def _combine(reports: list[WorkerReport], warmup: float) -> LoadRun:
    requests = [
        Request(started, finished, report.errors.get(index))
        for report in reports
        for index, (started, finished) in enumerate(zip(report.starts, report.finishes, strict=True))
    ]
    notes = []
    window = Window(max(r.started for r in reports) + warmup, min(r.drained for r in reports))
    if window.seconds <= 0:
        notes.append("too few requests for a steady state: the whole run is counted, warm-up included")
        window = Window(max(r.started for r in reports), max(max(r.finishes, default=0.0) for r in reports))
    load_cpu = sum(r.cpu_seconds / max(r.drained - r.started, 1e-9) for r in reports)
    kept = [pair for report in reports for pair in report.kept]
    return LoadRun(requests, window, kept, load_cpu, sum(r.cpu_total for r in reports), notes)


def _worker_main(
    spec: LoadSpec,
    barrier: Barrier,
    results: multiprocessing.Queue[WorkerReport | str],
    cpus: set[int] | None,
) -> None:
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        bodies = spec.bodies(spec.requests)
        authority = spec.endpoint.authority
        requests = [http_request("POST", spec.path, authority, spec.headers, body) for body in bodies]
        clients = Clients(
            (spec.endpoint.host, spec.endpoint.port),
            spec.endpoint.ssl_context(),
            requests,
            concurrency=spec.concurrency,
            timeout=spec.timeout,
            judge=functools.partial(_judge, spec.expect_type),
            keep=spec.keep,
        )
        barrier.wait(_START_TIMEOUT)
        started, cpu_started = time.monotonic(), time.process_time()
        timeline = clients.run()
        results.put(
            WorkerReport(
                started=started,
                drained=timeline.drained,
                starts=timeline.starts,
                finishes=timeline.finishes,
                errors=timeline.errors,
                kept=[(bodies[index], body) for index, body in timeline.kept],
                cpu_seconds=timeline.drained_cpu - cpu_started,
                cpu_total=time.process_time() - cpu_started,
            )
        )
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it
        barrier.abort()
        results.put(f"{type(err).__name__}: {err}")


def _judge(expect_type: str, answer: Answer) -> str | None:
    if answer.status != 200:
        return f"HTTP {answer.status}"
    if answer.media_type != expect_type:
        return f"content type {answer.media_type or 'missing'}"
    return None


def _split(total: int, part: int, parts: int) -> int:
    return total // parts + (1 if part < total % parts else 0)
