"""What the bench reads from /proc about the machine's CPUs."""

from __future__ import annotations

import os

import pytest

from scripts.devtools.bench.servers import cpu_seconds, machine_cpu_seconds

TICK = 1 / os.sysconf("SC_CLK_TCK")


def test_steal_is_neither_busy_nor_idle() -> None:
    #                user nice system idle iowait irq softirq steal guest guest_nice
    busy, stolen = cpu_seconds("cpu  700 10 200 9000 50 0 40 300 60 0")
    assert busy == pytest.approx((700 + 10 + 200 + 40) * TICK)  # guest time is inside user: not twice
    assert stolen == pytest.approx(300 * TICK)


def test_a_kernel_without_the_newer_columns() -> None:
    assert cpu_seconds("cpu  700 10 200 9000") == pytest.approx((910 * TICK, 0.0))


def test_this_machine_reads() -> None:
    first, second = machine_cpu_seconds(), machine_cpu_seconds()
    assert all(later >= earlier >= 0 for earlier, later in zip(first, second, strict=True))
