"""The PIN exchange's bench: one real exchange per round on each backend, and a figure for each side."""

from __future__ import annotations

import pytest

from custom_components.est_pairing.est import pake
from scripts.devtools.bench import pin_exchange

pytestmark = pytest.mark.slow  # the PIN exchange bench


def test_an_exchange_costs_both_sides_cpu() -> None:
    for _, backend in pin_exchange.backends():
        hub, appliance = pin_exchange.exchange(
            backend, pake.PinVerifier.create("oven", "482913", backend), pin_exchange.Fixture()
        )
        assert hub > 0
        assert appliance > 0


def test_the_bench_prints_a_line_per_backend(capsys: pytest.CaptureFixture[str]) -> None:
    results = pin_exchange.main(rounds=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("PIN exchange (srp6a-sha512-3072)")
    assert [costs.backend for costs in results] == [label for label, _ in pin_exchange.backends()]
    assert "pure Python" in lines[-1]
    assert len(lines) == 2 + len(results)
    for costs in results:
        assert min(costs.hub, costs.appliance, costs.make_verifier, costs.basic_check) > 0
        assert costs.loop_stall >= 0
