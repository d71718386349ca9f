"""The gate that lets requests ready for their CSR check go on in groups while the server is busy.

A "busy" event loop is made by a chain of callbacks that each hold the loop for a few milliseconds,
longer than the gate's idle turn, as other connections' TLS handshakes would. The waits below are
generous bounds that only a broken gate would reach; nothing here times the gate's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import time

import pytest

from custom_components.est_pairing.est.batching import WorkGroups

from .loops import LOOPS, run_on

IDLE_TURN = 0.001
BUSY_TURN = 0.003  # each turn of the busy chain holds the loop this long


class BusyLoop:
    """A chain of callbacks holding the event loop, one per turn, until stopped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, turn: float = BUSY_TURN) -> None:
        self.loop = loop
        self.turn = turn
        self.turns = 0
        self.running = True
        loop.call_soon(self._turn)

    def _turn(self) -> None:
        if self.running:
            self.turns += 1
            time.sleep(self.turn)
            self.loop.call_soon(self._turn)

    def stop(self) -> None:
        """Let the loop go quiet."""
        self.running = False


@pytest.fixture
async def busy_loop() -> AsyncIterator[BusyLoop]:
    """The event loop kept busy until the test stops it (or ends)."""
    busy = BusyLoop(asyncio.get_running_loop())
    yield busy
    busy.stop()


async def _arrive(gate: WorkGroups, order: list[int], number: int, busy: BusyLoop | None = None) -> float:
    """Wait at the gate; the loop's time when let through, or the busy chain's turn if there is one."""
    await gate.wait_turn()
    order.append(number)
    return busy.turns if busy else asyncio.get_running_loop().time()


async def test_a_lone_request_on_a_quiet_loop_goes_on_without_waiting_to_gather() -> None:
    gate = WorkGroups(gather=60, idle_turn=IDLE_TURN)

    await asyncio.wait_for(gate.wait_turn(), 5)

    assert (gate.groups, gate.requests) == (1, 1)


async def test_requests_arriving_while_the_loop_is_busy_go_on_together_in_order(
    busy_loop: BusyLoop,
) -> None:
    gate = WorkGroups(gather=0.05, idle_turn=IDLE_TURN)
    order: list[int] = []
    opened = asyncio.get_running_loop().time()

    turns = await asyncio.wait_for(
        asyncio.gather(*(_arrive(gate, order, number, busy_loop) for number in range(3))), 5
    )

    assert order == [0, 1, 2]
    assert (gate.groups, gate.requests) == (1, 3)
    assert len(set(turns)) == 1  # all let through in the same turn of the loop
    # the loop never went idle: the group gathered its full time
    assert asyncio.get_running_loop().time() >= opened + 0.05
    await asyncio.wait_for(_arrive(gate, order, 3), 5)
    assert (gate.groups, gate.requests) == (2, 4)  # a later request opens the next group


async def test_a_full_group_goes_on_at_once_and_the_next_one_waits_for_an_idle_turn(
    busy_loop: BusyLoop,
) -> None:
    gate = WorkGroups(gather=60, idle_turn=IDLE_TURN, max_group=2)
    order: list[int] = []
    tasks = [asyncio.create_task(_arrive(gate, order, number)) for number in range(3)]

    await asyncio.wait_for(asyncio.gather(tasks[0], tasks[1]), 5)
    for _ in range(5):  # several busy turns: the third request's group has no reason to go on yet
        await asyncio.sleep(0)

    assert order == [0, 1]
    assert not tasks[2].done()
    assert (gate.groups, gate.requests) == (1, 2)

    busy_loop.stop()  # the loop goes quiet: the open group goes on long before its 60 s are up
    await asyncio.wait_for(tasks[2], 5)

    assert order == [0, 1, 2]
    assert (gate.groups, gate.requests) == (2, 3)


async def test_cancelling_one_waiter_leaves_the_others_of_its_group_be(
    busy_loop: BusyLoop,
) -> None:
    gate = WorkGroups(gather=0.05, idle_turn=IDLE_TURN)
    order: list[int] = []
    tasks = [asyncio.create_task(_arrive(gate, order, number)) for number in range(3)]
    await asyncio.sleep(0)  # all three are waiting at the gate

    tasks[1].cancel()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)

    assert isinstance(results[1], asyncio.CancelledError)
    assert order == [0, 2]
    assert (gate.groups, gate.requests) == (1, 3)


@pytest.mark.parametrize("event_loop_kind", list(LOOPS))
def test_turns_shorter_than_the_loops_clock_tick_still_count_as_busy(event_loop_kind: str) -> None:
    """uvloop's clock counts whole milliseconds: busy turns of a fraction of one must not look idle."""

    async def scenario() -> None:
        busy = BusyLoop(asyncio.get_running_loop(), turn=0.0003)  # six times the idle turn
        gate = WorkGroups(gather=0.05)
        order: list[int] = []
        first = asyncio.create_task(_arrive(gate, order, 0))
        for _ in range(3):  # three busy turns: the group must stay open for the second request
            await asyncio.sleep(0)
        second = asyncio.create_task(_arrive(gate, order, 1))
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        busy.stop()
        assert (gate.groups, gate.requests) == (1, 2)

    run_on(event_loop_kind, scenario())
