"""Latency and throughput arithmetic for the benchmarks: percentiles and steady-state windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import itertools
import math


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between ranks (as numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """The latency figures the benchmarks print, in seconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies: Sequence[float]) -> LatencySummary:
        """Summarize; all zero when there is nothing to summarize."""
        if not latencies:
            return cls(0, 0.0, 0.0, 0.0, 0.0)
        ordered = sorted(latencies)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )

    @property
    def tail_ratio(self) -> float:
        """p99 / p50: how much worse the unlucky requests fare than the typical one."""
        return self.p99 / self.p50 if self.p50 else math.inf


@dataclass(frozen=True, slots=True)
class Request:
    """One timed request: when it started and finished (monotonic seconds), and whether it failed."""

    started: float
    finished: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """The steady state of a closed-loop run: every client busy, warm-up excluded."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """Length of the window."""
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Throughput:
    """What one load run achieved inside its steady-state window."""

    rate: float  # successful requests per second
    latency: LatencySummary  # of the successful requests that started inside the window
    errors: dict[str, int]  # failed requests that finished inside the window, by reason
    completed: int  # successful requests that finished inside the window
    window: Window

    @classmethod
    def of(cls, requests: Sequence[Request], window: Window) -> Throughput:
        """Count completions inside ``window``; take latencies of requests started inside it."""
        completed = 0
        errors: dict[str, int] = {}
        latencies = []
        for request in requests:
            finished_inside = window.start <= request.finished < window.end
            if request.error is not None:
                if finished_inside:
                    errors[request.error] = errors.get(request.error, 0) + 1
                continue
            completed += finished_inside
            if window.start <= request.started < window.end:
                latencies.append(request.finished - request.started)
        rate = completed / window.seconds if window.seconds else 0.0
        return cls(rate, LatencySummary.of(latencies), errors, completed, window)

    @property
    def error_count(self) -> int:
        """Failed requests inside the window."""
        return sum(self.errors.values())


def segment_rates(finishes: Sequence[float], parts: int = 10) -> tuple[float, ...]:
    """Completions per second in each of ``parts`` equal shares of the completions, in time order."""
    ordered = sorted(finishes)
    if len(ordered) < 2 * parts:
        return ()
    bounds = [round(i * (len(ordered) - 1) / parts) for i in range(parts + 1)]
    rates = []
    for low, high in itertools.pairwise(bounds):
        span = ordered[high] - ordered[low]
        rates.append((high - low) / span if span > 0 else math.inf)
    return tuple(rates)
