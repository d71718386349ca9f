"""The bench's summary: the figures side by side, and the five targets of issue 6 judged."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .measure import Measurement, ms
from .phases import Results, Stall, median

MIB = 2**20


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target: what was measured against what was wanted."""

    name: str
    measured: str
    wanted: str
    met: bool | None  # None: not measured (or not at the size the target names)


def judge(results: Results, concurrency: int) -> list[Verdict]:
    """The five targets."""
    return [
        _throughput(results, concurrency),
        _tail(results, concurrency),
        _scaling(results),
        _stall(results.stalls, "in-process EstService"),
        _stall(results.ha_stalls, "inside Home Assistant"),
        _memory(results),
    ]


def _throughput(results: Results, concurrency: int) -> Verdict:
    name = f"enrollment throughput at c={concurrency} vs the transport limit"
    if not (results.transport and results.enroll):
        return Verdict(name, "not measured", ">= 60%", None)
    transport, enroll = rate(results.transport), rate(results.enroll)
    raw = f"{enroll:.0f}/s / {transport:.0f}/s = {enroll / transport:.0%}"
    transport_capacity = median([m.capacity for m in results.transport])
    enroll_capacity = median([m.capacity for m in results.enroll])
    if not (transport_capacity and enroll_capacity):
        return Verdict(name, raw, ">= 60%", enroll / transport >= 0.6)
    ratio = enroll_capacity / transport_capacity
    measured = (
        f"per second of server CPU {enroll_capacity:.0f} / {transport_capacity:.0f} = {ratio:.0%} "
        f"(as measured, {raw})"
    )
    if rounds := round_ratios(results.transport, results.enroll):
        # The host's speed moves between rounds: the spread says how far to trust the median.
        measured += "; round by round " + ", ".join(f"{r:.0%}" for r in rounds)
    return Verdict(name, measured, ">= 60%", ratio >= 0.6)


def round_ratios(transport: Sequence[Measurement], enroll: Sequence[Measurement]) -> list[float]:
    """Enrollment per CPU-second over transport per CPU-second, for each interleaved pair of rounds.

    Empty for a single round, or when a round lacks the server's CPU time.
    """
    if min(len(transport), len(enroll)) < 2:
        return []
    ratios = []
    for limit, enrollment in zip(transport, enroll, strict=False):
        if not (limit.capacity and enrollment.capacity):
            return []
        ratios.append(enrollment.capacity / limit.capacity)
    return ratios


def _tail(results: Results, concurrency: int) -> Verdict:
    name = f"p99 / p50 latency at c={concurrency}"
    if not results.enroll:
        return Verdict(name, "not measured", "<= 4x", None)
    latency = typical(results.enroll).throughput.latency
    tail = median([m.throughput.latency.tail_ratio for m in results.enroll])
    return Verdict(
        name, f"{latency.p99 * 1e3:.1f} / {latency.p50 * 1e3:.1f} ms = {tail:.2f}x", "<= 4x", tail <= 4
    )


def _scaling(results: Results) -> Verdict:
    sizes = sorted(results.scaling)
    if len(sizes) < 2:
        return Verdict("throughput with a full ledger vs an empty one", "not measured", ">= 80%", None)
    small, large = rate(results.scaling[sizes[0]]), rate(results.scaling[sizes[-1]])
    ratio = large / small if small else 0.0
    at_size = sizes[-1] >= 100_000
    return Verdict(
        f"throughput with {sizes[-1]:,} vs {sizes[0]:,} certificates in the ledger",
        f"{large:.0f}/s / {small:.0f}/s = {ratio:.0%}",
        ">= 80%" + ("" if at_size else " (judged with 100,000)"),
        ratio >= 0.8 if at_size else None,
    )


def _stall(stalls: list[Stall], where: str) -> Verdict:
    name = f"longest event-loop stall caused by one enrollment ({where})"
    sequential = [s for s in stalls if s.sequential and s.enrollments]
    if not sequential:
        return Verdict(name, "not measured", "<= 5 ms", None)
    worst = max(sequential, key=lambda s: s.longest_on_cpu)
    measured = (
        f"{worst.longest_on_cpu * 1e3:.1f} ms, {worst.longest * 1e3:.1f} ms counting waits for a CPU "
        f"({worst.label})"
    )
    return Verdict(name, measured, "<= 5 ms", worst.longest_on_cpu <= 0.005)


def _memory(results: Results) -> Verdict:
    if results.memory is None:
        return Verdict("standalone server RSS after 100,000 enrollments", "not measured", "<= 150 MB", None)
    memory = results.memory
    at_size = memory.enrollments >= 100_000
    return Verdict(
        f"standalone server RSS after {memory.enrollments:,} enrollments",
        f"{memory.rss_after / 1e6:.0f} MB ({memory.rss_after / MIB:.1f} MiB)",
        "<= 150 MB" + ("" if at_size else " (judged after 100,000)"),
        memory.rss_after <= 150e6 if at_size else None,
    )


def rate(measurements: Sequence[Measurement]) -> float:
    """The median throughput of several rounds."""
    return median([m.throughput.rate for m in measurements])


def typical(measurements: Sequence[Measurement]) -> Measurement:
    """The round with the median throughput."""
    return sorted(measurements, key=lambda m: m.throughput.rate)[len(measurements) // 2]


def report(results: Results, verdicts: Sequence[Verdict], concurrency: int) -> str:
    """The summary printed at the end (and quoted in docs/performance.md)."""
    lines = ["", "== summary (medians of the rounds)"]
    if results.machine is not None:
        machine = results.machine
        lines.append(f"machine: {machine.cpus} CPUs, together {machine.parallel_speedup:.2f}x one")
    if results.crypto_limit:
        lines.append(f"crypto limit, CSR verify + sign on one core:  {results.crypto_limit:7.0f}/s")
    for label, measurements in (("transport limit", results.transport), ("enrollment", results.enroll)):
        if measurements:
            lines.append(_rates(f"{label}, c={concurrency}:", measurements))
    if results.enroll:
        enroll = rate(results.enroll)
        if results.transport:
            lines.append(
                f"  enrollment = {enroll / rate(results.transport):.0%} of the transport limit as measured"
            )
        if results.crypto_limit:
            lines.append(f"  enrollment = {enroll / results.crypto_limit:.0%} of the crypto limit")
        lines += _budget(results)
    lines += [f"sweep {m.line()}" for m in results.sweep]
    for size, measurements in sorted(results.scaling.items()):
        latency = typical(measurements).throughput.latency
        lines.append(
            _rates(f"ledger of {size:>7,}:", measurements) + f"  p50 {ms(latency.p50)} p99 {ms(latency.p99)}"
        )
    for stall in [*results.stalls, *results.ha_stalls]:
        typical_stall = f"  typical enrollment {ms(stall.typical)}" if stall.typical is not None else ""
        longest = f"longest {ms(stall.longest_on_cpu)} ({ms(stall.longest)})"
        lines.append(
            f"stall: {stall.label:<46} {longest}{typical_stall}"
            f"  ({stall.enrollments} enrollments, {stall.errors} errors)"
        )
    if results.memory is not None:
        memory = results.memory
        lines.append(
            f"memory: RSS {memory.rss_before / MIB:.1f} MiB at start, {memory.rss_after / MIB:.1f} MiB after "
            f"{memory.enrollments:,} enrollments (peak {memory.peak_rss / MIB:.1f} MiB), "
            f"{memory.run.throughput.rate:.0f}/s, p99 {ms(memory.run.throughput.latency.p99)}, "
            f"max {ms(memory.run.throughput.latency.max)}"
        )
        if memory.run.segments:
            lines.append(
                "  enrollments/s by tenth of the run: " + " ".join(f"{r:.0f}" for r in memory.run.segments)
            )
    lines += ["", "== targets"]
    for verdict in verdicts:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[verdict.met]
        lines.append(f"{mark} {verdict.name}: {verdict.measured} (want {verdict.wanted})")
    return "\n".join(lines)


def _budget(results: Results) -> list[str]:
    """Where an enrollment's server CPU goes, from the three measurements."""
    enroll = median([m.server_cost for m in results.enroll])
    transport = median([m.server_cost for m in results.transport])
    if not (enroll and transport and results.crypto_limit):
        return []
    crypto = 1 / results.crypto_limit
    rest = enroll - transport - crypto
    return [
        f"  server CPU per enrollment {enroll * 1e3:.3f} ms = TLS + HTTP {transport * 1e3:.3f} ms "
        f"({transport / enroll:.0%}) + CSR verify and sign {crypto * 1e3:.3f} ms ({crypto / enroll:.0%}) "
        f"+ the rest (policy, ledger and its fsync, encoding) {rest * 1e3:.3f} ms ({rest / enroll:.0%})"
    ]


def _rates(label: str, measurements: Sequence[Measurement]) -> str:
    text = f"{label:<38} {rate(measurements):7.0f}/s"
    capacity = median([m.capacity for m in measurements])
    cost = median([m.server_cost for m in measurements])
    if capacity:
        text += f"  (server {cost * 1e3:.3f} ms CPU each: {capacity:.0f}/s per CPU-second)"
    return text
