"""Requests that carry a CSR check and sign in groups, one after another, while the server is busy.

The listener's TLS runs in the ``ssl`` module's OpenSSL, CSR checks and signatures in
``cryptography``'s own copy. Between two enrollments the server runs other connections' TLS
handshakes, which evict the other copy's code and curve tables from the processor's caches: a CSR
check right after a handshake costs about 1.8 times one right after another check
(docs/performance.md, ``scripts/bench --two-openssls``). Letting the requests that are ready go on
together, back to back, leaves only the first of each group to find the caches cold.

A group opens with its first request and goes on as soon as the event loop has a turn with nothing
else to do (a lone request on a quiet server therefore goes on at the next turn, as it would have
anyway), after :data:`GATHER` at the latest, or at once when it holds :data:`MAX_GROUP` requests.
Its work then holds the loop as long as that many requests would have one after another.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import time
from typing import Final

GATHER: Final = 0.005  # seconds a group waits at most for company while the loop stays busy
IDLE_TURN: Final = 0.00005  # a loop turn this short ran nothing but the gate's own check
# Turns are timed with a clock of their own: uvloop's loop.time() counts whole milliseconds, read once
# a turn, and would take most busy turns (shorter than a millisecond) for idle ones.
_clock = time.perf_counter
MAX_GROUP: Final = 16  # requests that go on together at most


@dataclass(slots=True)
class _Group:
    deadline: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    size: int = 0
    check: asyncio.Handle | None = None


class WorkGroups:
    """The gate a request waits at before its CSR check; see the module's description."""

    def __init__(
        self, *, gather: float = GATHER, idle_turn: float = IDLE_TURN, max_group: int = MAX_GROUP
    ) -> None:
        self.gather = gather
        self.idle_turn = idle_turn
        self.max_group = max_group
        self._open: _Group | None = None
        self.groups = 0  # groups released so far
        self.requests = 0  # requests released in them

    async def wait_turn(self) -> None:
        """Return when this request's group goes on (cancelling one waiter leaves the others be)."""
        loop = asyncio.get_running_loop()
        group = self._open
        if group is None:
            now = _clock()
            self._open = group = _Group(deadline=now + self.gather)
            group.check = loop.call_soon(self._check, group, now)
        group.size += 1
        if group.size >= self.max_group:  # full: it goes on at the next turn, in order of arrival
            if group.check is not None:
                group.check.cancel()
            group.check = loop.call_soon(self._release, group)
            self._open = None
        await group.ready.wait()

    def _check(self, group: _Group, since: float) -> None:
        """Release the group if the turn since the last check ran nothing else, or time is up."""
        now = _clock()
        if now - since < self.idle_turn or now >= group.deadline:
            self._release(group)
        else:
            group.check = asyncio.get_running_loop().call_soon(self._check, group, now)

    def _release(self, group: _Group) -> None:
        group.check = None
        if self._open is group:
            self._open = None
        self.groups += 1
        self.requests += group.size
        group.ready.set()
