"""A loop-lag probe: how long an asyncio event loop (Home Assistant's, or any) was unable to run.

    async with LoopLagProbe() as probe:
        await something_that_should_not_block()
    print(f"longest stall {probe.max_lag * 1e3:.1f} ms")

A timer is due every ``interval``; each time it runs, it records how late it ran. A callback that
holds the loop for D seconds makes the next tick late by between D - interval and D, so the figures
are accurate to one interval (1 ms by default, which is also the resolution of the loop's epoll wait:
an idle loop shows lags of up to about 1 ms).
"""

from __future__ import annotations

import array
import asyncio
import bisect
from types import TracebackType
from typing import Self

from .stats import percentile


class LoopLagProbe:
    """Samples the lateness of a periodic timer on the running loop; reports the longest stall."""

    def __init__(self, interval: float = 0.001) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self.lags = array.array("d")  # seconds late, one per tick
        self.times = array.array("d")  # loop.time() of each tick (time.monotonic() on asyncio's loops)
        self.max_lag = 0.0
        self.max_lag_at = 0.0  # loop.time() when the longest stall ended
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None

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
        """Start sampling on the running loop (call from inside it)."""
        if self._handle is not None:
            raise RuntimeError("the probe is already running")
        loop = asyncio.get_running_loop()
        self._schedule(loop, loop.time())

    def stop(self) -> None:
        """Stop sampling; the figures stay."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def reset(self) -> None:
        """Forget the samples so far (e.g. after a warm-up), keep sampling."""
        self.lags = array.array("d")
        self.times = array.array("d")
        self.max_lag = 0.0
        self.max_lag_at = 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile of the lags (0 before the first sample)."""
        return percentile(self.lags, q) if self.lags else 0.0

    def lags_between(self, start: float, end: float) -> array.array[float]:
        """The lags of the ticks that ran between two ``loop.time()`` instants (inclusive)."""
        return self.lags[bisect.bisect_left(self.times, start) : bisect.bisect_right(self.times, end)]

    def max_lag_between(self, start: float, end: float) -> float:
        """The longest stall that ended between two ``loop.time()`` instants (0 if none)."""
        return max(self.lags_between(start, end), default=0.0)

    def _schedule(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        lag = max(0.0, now - self._due)
        self.lags.append(lag)
        self.times.append(now)
        if lag > self.max_lag:
            self.max_lag = lag
            self.max_lag_at = now
        self._schedule(loop, now)
