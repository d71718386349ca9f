"""The loop-lag probe sees a loop being blocked, and only then."""

from __future__ import annotations

import array
import asyncio
import sys
import time

import pytest

from scripts.devtools.bench.loop_lag import LoopLagProbe

BLOCK = 0.03


async def test_the_probe_measures_a_blocking_call() -> None:
    async with LoopLagProbe(interval=0.001) as probe:
        await asyncio.sleep(0.01)
        time.sleep(BLOCK)  # noqa: ASYNC251 - the stall to measure: the loop runs nothing meanwhile
        await asyncio.sleep(0.01)
    assert probe.max_lag >= BLOCK - probe.interval
    assert probe.percentile(100) == probe.max_lag
    assert len(probe.lags) == len(probe.times) == len(probe.cpu_waits) >= 2  # before and after the stall
    assert not probe.running


async def test_waiting_for_a_cpu_can_be_told_apart_from_a_busy_loop() -> None:
    async with LoopLagProbe() as probe:
        await asyncio.sleep(0.01)
        time.sleep(BLOCK)  # noqa: ASYNC251 - asleep, not waiting for a CPU: still a stall of the loop
        await asyncio.sleep(0.01)
    assert all(wait >= 0 for wait in probe.cpu_waits)
    assert probe.longest(exclude_cpu_wait=True) <= probe.longest() == probe.max_lag
    if sys.platform == "linux":  # the kernel tells how long the thread waited for a CPU
        assert probe.longest(exclude_cpu_wait=True) >= BLOCK - probe.interval - sum(probe.cpu_waits)


async def test_lags_between_picks_the_stall_out_of_a_longer_run() -> None:
    """The stall's own tick runs inside the window: the tick was overdue when the loop got back, so it
    runs before the window's closing sleep ends. Other ticks may be late too (a loaded machine), so
    the window is checked for the stall, not for holding the run's longest lag."""
    loop = asyncio.get_running_loop()
    async with LoopLagProbe() as probe:
        await asyncio.sleep(0.01)
        before = loop.time()
        time.sleep(BLOCK)  # noqa: ASYNC251 - the stall
        await asyncio.sleep(0.005)
        after = loop.time()
        await asyncio.sleep(0.01)
    assert probe.longest(before, after) >= BLOCK - probe.interval
    assert probe.longest(after + 1, after + 2) == 0.0  # the probe had stopped by then


def test_lags_between_takes_the_ticks_that_ended_in_the_window() -> None:
    probe = LoopLagProbe()
    probe.times = array.array("d", [1.0, 2.0, 3.0, 4.0, 5.0])
    probe.lags = array.array("d", [0.001, 0.05, 0.002, 0.2, 0.003])
    probe.cpu_waits = array.array("d", [0.0, 0.04, 0.0, 0.0, 0.0])
    assert probe.longest() == 0.2
    assert probe.longest(1.5, 3.5) == 0.05
    assert probe.longest(2.0, 2.0) == 0.05  # both ends included
    assert probe.longest(1.5, 3.5, exclude_cpu_wait=True) == pytest.approx(0.01)
    assert probe.longest(4.5) == 0.003
    assert probe.longest(end=1.5) == 0.001
    assert probe.longest(5.5, 9.0) == 0.0


async def test_the_probe_stops_and_can_start_afresh() -> None:
    probe = LoopLagProbe()
    probe.start()
    with pytest.raises(RuntimeError):
        probe.start()
    await asyncio.sleep(0.01)
    probe.stop()
    count = len(probe.lags)
    assert count > 0
    await asyncio.sleep(0.01)
    assert len(probe.lags) == count  # stopped: no more samples
    probe.reset()
    assert (len(probe.lags), probe.max_lag, probe.percentile(99)) == (0, 0.0, 0.0)


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLagProbe(interval=0)
