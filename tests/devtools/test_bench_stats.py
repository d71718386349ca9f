"""The bench's arithmetic: percentiles, steady-state windows, throughput along a run."""

from __future__ import annotations

import math
import statistics

import pytest

from scripts.devtools.bench.stats import (
    LatencySummary,
    Request,
    Throughput,
    Window,
    percentile,
    segment_rates,
)


@pytest.mark.parametrize(
    "values",
    [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0], [float(v) for v in range(1, 101)], [0.1, 0.1, 0.2, 9.0, 0.3, 0.1]],
)
def test_percentiles_interpolate_between_ranks_like_statistics_inclusive(values: list[float]) -> None:
    if len(values) > 1:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for q in (1, 10, 50, 90, 99):
            assert percentile(values, q) == pytest.approx(cuts[q - 1])
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)


@pytest.mark.parametrize(
    ("values", "q", "reason"), [([], 50, "no values"), ([1.0], -1, "outside"), ([1.0], 100.5, "outside")]
)
def test_percentile_refuses_nonsense(values: list[float], q: float, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        percentile(values, q)


def test_latency_summary() -> None:
    summary = LatencySummary.of([0.004, 0.001, 0.002, 0.003])
    assert (summary.count, summary.p50, summary.max) == (4, 0.0025, 0.004)
    assert summary.tail_ratio == pytest.approx(summary.p99 / 0.0025)
    empty = LatencySummary.of([])
    assert empty.count == 0 and empty.tail_ratio == math.inf


def test_throughput_counts_only_the_steady_state_window() -> None:
    window = Window(10.0, 20.0)
    requests = [
        Request(9.0, 10.5),  # finished inside, started in the warm-up: counted, latency not taken
        Request(11.0, 12.0),  # inside
        Request(12.0, 14.0),  # inside
        Request(19.0, 21.0),  # started inside, finished after: latency taken, not counted
        Request(20.5, 21.0),  # after
        Request(13.0, 13.5, "HTTP 503"),  # error inside
        Request(21.0, 22.0, "timeout"),  # error after
    ]
    throughput = Throughput.of(requests, window)
    assert throughput.completed == 3
    assert throughput.rate == pytest.approx(0.3)
    assert throughput.errors == {"HTTP 503": 1}
    assert throughput.error_count == 1
    assert throughput.latency.count == 3
    assert throughput.latency.max == 2.0


def test_an_empty_window_has_no_rate() -> None:
    assert Throughput.of([Request(1.0, 2.0)], Window(5.0, 5.0)).rate == 0.0


def test_segment_rates_follow_the_pace_of_completions() -> None:
    steady = [i * 0.01 for i in range(1001)]  # 100/s
    assert segment_rates(steady) == pytest.approx((100.0,) * 10)
    slowing = [i * 0.01 for i in range(500)] + [5 + i * 0.02 for i in range(501)]
    rates = segment_rates(slowing, parts=2)
    assert rates[0] == pytest.approx(100, rel=0.01) and rates[1] == pytest.approx(50, rel=0.01)
    assert segment_rates([1.0, 2.0], parts=10) == ()
