"""How often something that keeps happening is worth a log line: at most once per interval.

Any device on the LAN can make the listener answer 503 or fill its connection cap at will: each is
worth a warning, but not one per occurrence.
"""

from __future__ import annotations

from collections.abc import Callable
import time


class OncePer:
    """Whether something that keeps happening is due a log line: at most once per ``interval``."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.held_back = 0  # occurrences since the last one that was due, when it is due
        self._last: float | None = None
        self._since = 0

    def due(self) -> bool:
        """Count one occurrence; True when it is the first, or ``interval`` has passed since the last due."""
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self._since += 1
            return False
        self._last, self.held_back, self._since = now, self._since, 0
        return True

    def note(self) -> str:
        """What a line that is due adds: how many it stands for, and how long the next ones are quiet."""
        held_back = f"{self.held_back} more since the last warning; " if self.held_back else ""
        return f"({held_back}the next ones are logged at debug level for {self.interval:g} s)"
