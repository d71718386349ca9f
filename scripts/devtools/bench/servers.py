"""Server processes under test: start one on chosen CPUs, read its CPU time and memory from /proc, stop it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

_LISTENING = re.compile(r"listening on (https://\S+?):(\d+)")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class ServerProcess:
    """A server started by :func:`start_server`."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    def cpu_seconds(self) -> float:
        """CPU time used so far, every thread included."""
        return process_cpu_seconds(self.pid)

    def rss(self) -> int:
        """Resident memory now, bytes."""
        return _status_kib(self.pid, "VmRSS") * 1024

    def peak_rss(self) -> int:
        """The most resident memory it ever had, bytes."""
        return _status_kib(self.pid, "VmHWM") * 1024

    def stop(self) -> None:
        """SIGTERM, as a service manager would; SIGKILL if it does not stop within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    module: str,
    args: list[str],
    *,
    log: Path,
    cpus: set[int] | None,
    wrapper: Sequence[str] = (),
    start_timeout: float = 120,
) -> ServerProcess:
    """Run ``python -m module args`` and wait for its ``listening on https://HOST:PORT`` line.

    ``wrapper``: a command that runs it (e.g. valgrind's), whose process id becomes the server's.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", module, *args],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    if cpus:
        os.sched_setaffinity(process.pid, cpus)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if match := _LISTENING.search(log.read_text(errors="replace")):
            host = match.group(1).removeprefix("https://").strip("[]")
            return ServerProcess(process, host, int(match.group(2)), log)
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{module} did not start listening within {start_timeout:g} s")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen): CPU time this machine's CPUs spent running something, and lost to the host.

    Steal is the time a virtual CPU was ready but the hypervisor ran another guest: on a shared
    host it shows as load no process of this machine made, and as event-loop stalls the probe cannot
    tell from the loop's own.
    """
    return cpu_seconds(Path("/proc/stat").read_text().split("\n", 1)[0])


def cpu_seconds(total_line: str) -> tuple[float, float]:
    """(busy, stolen) seconds from the ``cpu`` line of /proc/stat (see :func:`machine_cpu_seconds`)."""
    values = [int(v) for v in total_line.split()[1:]]
    values += [0] * (10 - len(values))  # older kernels print fewer columns
    idle = values[3] + values[4]  # idle, iowait
    steal = values[7]
    guest = values[8] + values[9]  # already counted in user and nice
    return (sum(values) - idle - steal - guest) / _CLOCK_TICKS, steal / _CLOCK_TICKS


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)
