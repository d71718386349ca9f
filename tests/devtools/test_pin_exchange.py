"""The PIN exchange's bench: one real exchange per round on each backend, and a figure for each side."""

from __future__ import annotations

import asyncio

import pytest

from custom_components.est_pairing.est import verifiers
from custom_components.est_pairing.est.errors import PairingProofFailed
from scripts.devtools.bench import pin_exchange
from scripts.devtools.bench.home_assistant import stalls_inside_home_assistant
from scripts.devtools.bench.loadgen import LoadRun
from scripts.devtools.bench.measure import Measurement, Target

pytestmark = pytest.mark.slow  # the PIN exchange bench


def test_an_exchange_costs_both_sides_cpu() -> None:
    for _, _, backend in pin_exchange.backends():
        hub, appliance = asyncio.run(
            pin_exchange.exchange(
                backend, verifiers.PinVerifier.create("oven", "482913", backend), pin_exchange.Fixture()
            )
        )
        assert hub > 0
        assert appliance > 0


def test_the_timed_exchange_is_a_real_one_that_a_wrong_pin_fails() -> None:
    """The figures are of exchanges that prove the PIN: one the hub holds another PIN for fails."""
    for _, _, backend in pin_exchange.backends():
        wrong = verifiers.PinVerifier.create("oven", "000000", backend)
        with pytest.raises(PairingProofFailed):
            asyncio.run(pin_exchange.exchange(backend, wrong, pin_exchange.Fixture()))


def test_the_bench_prints_a_line_per_backend(capsys: pytest.CaptureFixture[str]) -> None:
    results = pin_exchange.main(rounds=1, exchanges=1, home_assistant=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PIN exchange (srp6a-sha512-3072)")
    assert [costs.backend for costs in results] == [label for label, _, _ in pin_exchange.backends()]
    assert len(lines) == 2 + len(results) + 2 + len(results)
    assert lines[2 + len(results)].startswith("1 whole PIN exchanges over the listener")
    assert "pure Python" in lines[-1]
    for costs in results:
        assert min(costs.hub, costs.appliance, costs.make_verifier, costs.basic_check) > 0
        assert costs.loop_stall >= 0
        assert list(costs.listener_stalls) == ["standalone server"]


def test_the_home_assistant_phase_pairs_through_the_exchange_with_the_owner_typing_the_pin() -> None:
    def no_load(target: Target, concurrency: int, requests: int) -> tuple[Measurement, LoadRun]:
        raise AssertionError("no enrollment runs were asked for")

    measured, paired = asyncio.run(stalls_inside_home_assistant([], no_load, "bench-pin", exchanges=2))
    assert measured == []
    assert paired is not None
    probe, windows = paired
    assert len(windows) == 2  # each appliance's dialog ended "paired", or the phase raised
    assert all(start < end for start, end in windows)
    assert windows[0][1] <= windows[1][0]  # one after another
    assert probe.longest(windows[0][0], windows[1][1]) > 0
