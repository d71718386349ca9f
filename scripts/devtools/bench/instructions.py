"""Instructions per request under valgrind's callgrind: figures the host's load does not move.

CPU time moves with whatever else the host runs (and with the caches other processes leave cold);
the instructions a request costs do not, to a fraction of a percent. Each server runs under
callgrind, answers :data:`WARMUP` requests, has its counters zeroed, answers the measured requests
from the bench's load generator (:data:`CONCURRENCY` clients, a fresh TLS connection each), and has
its counters dumped; the dump's total over the requests is the figure. A callgrind run is about
fifty times slower than the server alone, so the counts are small. ``scripts/bench --instructions``.
"""

from __future__ import annotations

from pathlib import Path
import shutil
import subprocess
from typing import Final

WARMUP: Final = 40  # requests before the counters are zeroed: imports, first handshakes, caches
CONCURRENCY: Final = 8
REQUESTS: Final = 300  # measured requests (--requests): a ledger compaction inside moves a figure ~1%


def missing_tools() -> list[str]:
    """The valgrind programs this needs that are not installed."""
    return [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]


def callgrind(out: Path) -> list[str]:
    """The command prefix that runs a program under callgrind, dumping to ``out`` (``out.1`` first)."""
    return ["valgrind", "--tool=callgrind", "--collect-atstart=yes", f"--callgrind-out-file={out}"]


def zero(pid: int) -> None:
    """Zero the counters of the program callgrind runs as ``pid``."""
    subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)


def dump(pid: int, out: Path) -> int:
    """Dump the counters (to ``out.1``, the first dump) and return the instructions they counted."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    return dump_total(out.with_name(f"{out.name}.1"))


def dump_total(path: Path) -> int:
    """The instructions a callgrind dump counted: its ``totals:`` line (``summary:`` in older files)."""
    with path.open(errors="replace") as lines:
        for line in lines:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise ValueError(f"{path} holds no totals: not a callgrind dump")
