"""The bench's verdict on the CPU target: medians of server CPU per request, and the rounds' spread."""

from __future__ import annotations

import pytest

from scripts.devtools.bench.measure import Measurement
from scripts.devtools.bench.phases import Results, Stall
from scripts.devtools.bench.report import judge, report, round_ratios
from scripts.devtools.bench.stats import LatencySummary, Throughput, Window


def measured(target: str, rate: float, cpu_seconds: float | None, requests: int = 1000) -> Measurement:
    """A round that answered ``requests`` at ``rate`` while the server used ``cpu_seconds``."""
    latency = LatencySummary(requests, 0.05, 0.06, 0.08, 0.09)
    throughput = Throughput(rate, latency, {}, requests, Window(0.5, 0.5 + requests / rate))
    return Measurement(target, 32, throughput, requests, requests / rate, cpu_seconds, 0.8, 0.02)


def test_each_round_pair_gives_its_own_ratio() -> None:
    bare = [measured("bare", 900, 1.0), measured("bare", 1000, 0.9)]
    enroll = [measured("enroll", 500, 1.3), measured("enroll", 600, 1.5)]
    assert round_ratios(bare, enroll) == pytest.approx([1.3, 1.5 / 0.9])


@pytest.mark.parametrize(
    ("bare", "enroll"),
    [
        ([measured("bare", 900, 1.0)], [measured("enroll", 500, 1.6)]),  # one round: no spread
        (
            [measured("bare", 900, None), measured("bare", 900, 1.0)],  # a server not ours
            [measured("enroll", 500, 1.6), measured("enroll", 500, 1.6)],
        ),
    ],
)
def test_no_ratios_without_rounds_or_cpu_times(bare: list[Measurement], enroll: list[Measurement]) -> None:
    assert round_ratios(bare, enroll) == []


def test_each_loop_is_judged_against_the_bare_request_on_asyncio() -> None:
    bare = [measured("bare", 1000, 1.0), measured("bare", 950, 1.1), measured("bare", 1000, 0.9)]
    results = Results(
        bare={"asyncio": bare, "uvloop": [measured("bare", 1200, 0.7)] * 3},
        enroll={
            "asyncio": [measured("enroll", 600, cpu) for cpu in (1.5, 1.4, 1.6)],
            "uvloop": [measured("enroll", 700, cpu) for cpu in (1.3, 1.2, 1.35)],
        },
    )
    asyncio_verdict, uvloop_verdict = judge(results, 32)[:2]
    # medians: bare 1.0 ms of CPU a request; enrollment 1.5 ms on asyncio, 1.3 ms on uvloop
    assert "(asyncio) vs a bare TLS request" in asyncio_verdict.name
    assert asyncio_verdict.met is False
    assert asyncio_verdict.measured.startswith("1.500 / 1.000 ms = 1.50x")
    assert "(uvloop) vs a bare TLS request (aiohttp, asyncio)" in uvloop_verdict.name
    assert uvloop_verdict.met is True
    assert uvloop_verdict.measured.endswith("round by round 1.30x, 1.09x, 1.50x")
    summary = report(results, judge(results, 32), 32)
    assert "MISSED server CPU per enrollment (asyncio)" in summary
    assert "met    server CPU per enrollment (uvloop)" in summary
    assert "met    p99 / p50 latency at c=32 (uvloop)" in summary


def test_home_assistants_cpu_is_judged_only_against_a_baseline() -> None:
    results = Results(ha_cpu=0.0016)
    (verdict,) = [v for v in judge(results, 32) if "Home Assistant's CPU" in v.name]
    assert verdict.met is None
    (verdict,) = [v for v in judge(results, 32, 0.0015) if "Home Assistant's CPU" in v.name]
    assert verdict.met is True  # within 10% of the baseline
    (verdict,) = [v for v in judge(results, 32, 0.0014) if "Home Assistant's CPU" in v.name]
    assert verdict.met is False


@pytest.mark.parametrize("concurrency", [8, 64])
def test_home_assistants_cpu_is_labelled_with_the_runs_concurrency(concurrency: int) -> None:
    """Not the default's 32 when the bench ran with another --concurrency."""
    results = Results(ha_cpu=0.0016)
    summary = report(results, judge(results, concurrency, 0.0015), concurrency)
    assert f"Home Assistant's CPU per enrollment, {concurrency} at a time: 1.600 ms" in summary
    assert f"met    Home Assistant's CPU per enrollment, {concurrency} at a time: 1.600 ms" in summary
    assert "32 at a time" not in summary


def test_a_stall_says_whether_it_counted_enrollments_or_pairings() -> None:
    def stall(label: str, count: int, typical: float, unit: str) -> Stall:
        return Stall(label, count, 0, 0.04, 0.003, typical, typical, 0.001, sequential=True, unit=unit)

    stalls = [
        stall("in Home Assistant, one enrollment at a time", 200, 0.0006, "enrollment"),
        stall("in Home Assistant, pairing by PIN exchange", 5, 0.0018, "pairing"),
    ]
    summary = report(Results(ha_stalls=stalls), [], 32).splitlines()
    enrolling, pairing = (line for line in summary if line.startswith("stall: "))
    assert enrolling.endswith("typical enrollment    0.6 ms  (200 enrollments, 0 errors)")
    assert pairing.endswith("typical pairing    1.8 ms  (5 pairings, 0 errors)")


def test_the_bare_request_run_busy_is_shown_beside_each_enrollment_and_not_judged() -> None:
    bare = [measured("bare", 700, 0.6)] * 3
    results = Results(
        bare={"asyncio": bare},
        bare_busy=[measured("bare", 1250, cpu) for cpu in (0.5, 0.52, 0.48)],
        enroll={
            "asyncio": [measured("enroll", 1300, 0.75)] * 3,
            "uvloop": [measured("enroll", 1300, 0.7)] * 3,
        },
    )
    verdicts = judge(results, 32)
    summary = report(results, verdicts, 32)
    assert "bare TLS request (asyncio), c=64:" in summary
    assert "against the bare request (asyncio) at c=64, 1250/s (0.500 ms): 1.50x" in summary
    assert "(0.500 ms): 1.40x" in summary  # uvloop's enrollment
    # the verdict stays the issue's: against the bare request at c=32 (0.75 / 0.6 = 1.25x)
    (cpu,) = [v for v in verdicts if v.name.startswith("server CPU per enrollment (asyncio)")]
    assert cpu.measured.startswith("0.750 / 0.600 ms = 1.25x")
    assert cpu.met is True
    assert len(verdicts) == len(judge(Results(bare={"asyncio": bare}, enroll=results.enroll), 32))
