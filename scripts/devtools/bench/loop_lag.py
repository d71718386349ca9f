"""A loop-lag probe: how long an asyncio event loop (Home Assistant's, or any) was unable to run.

    async with LoopLagProbe() as probe:
        await something_that_should_not_block()
    print(f"longest stall {probe.max_lag * 1e3:.1f} ms")

A timer is due every ``interval``; each time it runs, it records how late it ran. A callback that
holds the loop for D seconds makes the next tick late by between D - interval and D, so the figures
are accurate to one interval (1 ms by default, which is also the resolution of the loop's epoll wait:
an idle loop shows lags of up to about 1 ms).

On Linux each tick also records how long the loop's thread sat ready to run while the kernel ran
something else on its CPU (``/proc/thread-self/schedstat``). On a busy machine that, not the code on
the loop, can make a tick late: ``longest(exclude_cpu_wait=True)`` leaves it out. Waiting for the
GIL is not waiting for a CPU: a worker thread that holds the GIL still counts as a stall.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import contextlib
import math
import os
from types import TracebackType
from typing import Self

from .stats import percentile

_SCHEDSTAT = "/proc/thread-self/schedstat"  # CPU time, run-queue wait, timeslices (ns, ns, count)


class LoopLagProbe:
    """Samples the lateness of a periodic timer on the running loop; reports the longest stall."""

    def __init__(self, interval: float = 0.001) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.lags = array.array("d")  # seconds late, one per tick
        self.cpu_waits = array.array("d")  # seconds the loop's thread waited for a CPU since the last tick
        self.times = array.array("d")  # loop.time() of each tick (time.monotonic() on asyncio's loops)
        self.max_lag = 0.0
        self.max_lag_at = 0.0  # loop.time() when the longest stall ended
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._schedstat: int | None = None
        self._waited = 0.0

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the probe is sampling."""
        return self._handle is not None

    def start(self) -> None:
        """Start sampling on the running loop (call from inside it, on its thread)."""
        if self._handle is not None:
            raise RuntimeError("the probe is already running")
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):  # not Linux: no CPU-wait figures
            self._schedstat = os.open(_SCHEDSTAT, os.O_RDONLY)  # this thread's, as long as it is open
        self._waited = self._cpu_waited()
        self._schedule(loop, loop.time())

    def stop(self) -> None:
        """Stop sampling; the figures stay."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def reset(self) -> None:
        """Forget the samples so far (e.g. after a warm-up), keep sampling."""
        self.lags = array.array("d")
        self.cpu_waits = array.array("d")
        self.times = array.array("d")
        self.max_lag = 0.0
        self.max_lag_at = 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the lags (0 before the first sample)."""
        return percentile(self.lags, q) if self.lags else 0.0

    def longest(
        self, start: float = -math.inf, end: float = math.inf, *, exclude_cpu_wait: bool = False
    ) -> float:
        """The longest stall that ended between two ``loop.time()`` instants (0 if none).

        ``exclude_cpu_wait`` takes off each lag the time the loop's thread waited for a CPU.
        """
        first, last = bisect.bisect_left(self.times, start), bisect.bisect_right(self.times, end)
        lags = self.lags[first:last]
        if exclude_cpu_wait:
            return max(
                (max(0.0, lag - wait) for lag, wait in zip(lags, self.cpu_waits[first:last], strict=True)),
                default=0.0,
            )
        return max(lags, default=0.0)

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        lag = max(0.0, now - self._due)
        waited = self._cpu_waited()
        self.lags.append(lag)
        self.cpu_waits.append(waited - self._waited)
        self.times.append(now)
        self._waited = waited
        if lag > self.max_lag:
            self.max_lag = lag
            self.max_lag_at = now
        self._schedule(loop, now)

    def _cpu_waited(self) -> float:
        """Seconds this thread has spent ready to run but not running (0 where unknown)."""
        if self._schedstat is None:
            return 0.0
        return int(os.pread(self._schedstat, 64, 0).split()[1]) / 1e9
