"""Wrong-secret throttling: per-identity exponential lockout plus a global ceiling (pure, clocked)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
import math

from .errors import LockedOut
from .limits import (
    FAILURE_MEMORY,
    FREE_ATTEMPTS,
    GLOBAL_FAILURES_PER_MINUTE,
    LOCKOUT_BASE,
    LOCKOUT_MAX,
)

_WINDOW = 60.0
MAX_TRACKED = 4096


@dataclass(slots=True)
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class SecretThrottle:
    """Counts wrong secrets and locks identities out.

    After ``FREE_ATTEMPTS`` wrong secrets an identity is locked for ``LOCKOUT_BASE`` seconds, doubling
    with each further wrong secret up to ``LOCKOUT_MAX``. Attempts while locked are refused without
    being counted, so a lockout ends when its window passes, however hard it was hammered.
    """

    def __init__(self, clock: Callable[[], float], *, keeps: Callable[[str], bool] = lambda _: False) -> None:
        """A throttle on ``clock``; ``keeps`` names identities whose count is never dropped.

        Those the hub holds a secret for, a set the owner bounds: flooding the table with made-up
        identities must not wipe the count of a PIN someone is guessing.
        """
        self._clock = clock
        self._keeps = keeps
        self._records: dict[str, _Record] = {}
        self._recent: deque[float] = deque(maxlen=GLOBAL_FAILURES_PER_MINUTE)

    def __len__(self) -> int:
        """Identities with wrong secrets on record (bounded: quiet, unlocked, unkept ones are dropped)."""
        return len(self._records)

    def check(self, identity: str, *, server_wide: bool = True) -> None:
        """Raise LockedOut if this identity, or everyone, must wait before trying a secret.

        ``server_wide=False`` leaves out the ceiling on everyone's wrong secrets: for the owner, whom
        guessers on the LAN must not be able to keep from approving an appliance.
        """
        now = self._clock()
        if server_wide and len(self._recent) == self._recent.maxlen and now - self._recent[0] < _WINDOW:
            raise LockedOut(
                "too many wrong secrets on this server; try again later",
                _ceil(self._recent[0] + _WINDOW - now),
            )
        record = self._records.get(identity)
        if record is not None and record.locked_until > now:
            raise LockedOut(
                "too many wrong secrets for this appliance; locked for a while",
                _ceil(record.locked_until - now),
            )

    def failure(self, identity: str) -> None:
        """Count a wrong secret; lock the identity once its free attempts are used up."""
        now = self._clock()
        self._recent.append(now)
        record = self._records.get(identity)
        if record is None or now - record.last_failure > FAILURE_MEMORY:
            record = self._records[identity] = _Record()
        record.failures += 1
        record.last_failure = now
        excess = record.failures - FREE_ATTEMPTS
        if excess >= 0:
            record.locked_until = now + min(LOCKOUT_BASE * 2 ** min(excess, 32), LOCKOUT_MAX)
        self._prune(now)

    def lock(self, identity: str) -> None:
        """Lock an identity now, as if its free attempts were used up (the owner typed wrong PINs)."""
        record = self._records.setdefault(identity, _Record())
        record.failures = max(record.failures, FREE_ATTEMPTS - 1)
        record.last_failure = self._clock()  # a record that old would be forgotten, not counted
        self.failure(identity)

    def success(self, identity: str) -> None:
        """A right secret forgives earlier wrong ones."""
        self._records.pop(identity, None)

    def locked_until(self, identity: str) -> float | None:
        """When the identity's lockout ends, if it is locked now."""
        record = self._records.get(identity)
        if record is None or record.locked_until <= self._clock():
            return None
        return record.locked_until

    def _prune(self, now: float) -> None:
        if len(self._records) <= MAX_TRACKED:
            return
        for identity, record in list(self._records.items()):
            if (
                record.locked_until <= now
                and now - record.last_failure > _WINDOW
                and not self._keeps(identity)
            ):
                del self._records[identity]


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds))
