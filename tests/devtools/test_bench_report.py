"""The bench's verdict on the throughput target: medians per CPU-second, and the rounds' spread."""

from __future__ import annotations

import pytest

from scripts.devtools.bench.measure import Measurement
from scripts.devtools.bench.phases import Results
from scripts.devtools.bench.report import judge, round_ratios
from scripts.devtools.bench.stats import LatencySummary, Throughput, Window


def measured(target: str, rate: float, cpu_seconds: float | None, requests: int = 1000) -> Measurement:
    """A round that answered ``requests`` at ``rate`` while the server used ``cpu_seconds``."""
    latency = LatencySummary(requests, 0.05, 0.06, 0.08, 0.09)
    throughput = Throughput(rate, latency, {}, requests, Window(0.5, 0.5 + requests / rate))
    return Measurement(target, 32, throughput, requests, requests / rate, cpu_seconds, 0.8, 0.02)


def test_each_round_pair_gives_its_own_ratio() -> None:
    transport = [measured("transport", 900, 1.0), measured("transport", 1000, 0.9)]
    enroll = [measured("enroll", 500, 1.6), measured("enroll", 600, 1.5)]
    assert round_ratios(transport, enroll) == pytest.approx([1.0 / 1.6, 0.9 / 1.5])


@pytest.mark.parametrize(
    ("transport", "enroll"),
    [
        ([measured("transport", 900, 1.0)], [measured("enroll", 500, 1.6)]),  # one round: no spread
        (
            [measured("transport", 900, None), measured("transport", 900, 1.0)],  # a server not ours
            [measured("enroll", 500, 1.6), measured("enroll", 500, 1.6)],
        ),
    ],
)
def test_no_ratios_without_rounds_or_cpu_times(
    transport: list[Measurement], enroll: list[Measurement]
) -> None:
    assert round_ratios(transport, enroll) == []


def test_the_verdict_judges_the_medians_and_shows_the_rounds() -> None:
    results = Results(
        transport=[
            measured("transport", 1000, 1.0),
            measured("transport", 950, 1.1),
            measured("transport", 1000, 0.9),
        ],
        enroll=[measured("enroll", 600, 1.7), measured("enroll", 600, 1.6), measured("enroll", 620, 1.5)],
    )
    verdict = judge(results, 32)[0]
    # medians: transport 1000 requests / 1.0 s of CPU, enrollment 1000 / 1.6 s: 62.5%
    assert verdict.met is True
    assert f"= {0.625:.0%} " in verdict.measured
    assert verdict.measured.endswith("round by round 59%, 69%, 60%")
    results.enroll[1] = measured("enroll", 500, 2.0)  # the median enrollment round now costs 2.0 s
    assert judge(results, 32)[0].met is False
