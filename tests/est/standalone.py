"""The standalone command (``python -m est_tools.standalone``) as a separate process, as a user runs it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time

ROOT = Path(__file__).parents[2]
_READY = re.compile(r"listening on (https://127\.0\.0\.1:(\d+))/\.well-known/est\n")


def environment() -> dict[str, str]:
    """The environment ``scripts/est-server`` gives the command."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


async def est_server(*args: str | Path, stdin: str = "") -> tuple[int, str, str]:
    """Run one command (approve, list...) to completion: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_tools.standalone",
        *map(str, args),
        env=environment(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@dataclass
class Serving:
    """A running ``est-server serve``; its output is drained so that it never blocks on a full pipe."""

    process: asyncio.subprocess.Process
    url: str
    port: int
    fingerprint: str
    output: asyncio.Task[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> str:
        """SIGTERM; the process must exit 0. Returns what it printed after its ready lines."""
        self.process.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(self.output, 30)).decode()
        assert await self.process.wait() == 0
        return rest

    async def kill(self) -> None:
        """SIGKILL, as a power cut would."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        await self.output


async def start(data_dir: Path, *extra: str) -> Serving:
    """``serve --data-dir DIR --port 0 *extra``, once it says where it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_tools.standalone",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        "0",
        *extra,
        env=environment(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    listening = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
    match = _READY.fullmatch(listening)
    assert match, listening
    ca_line = (await process.stdout.readline()).decode()
    assert ca_line.startswith("CA SHA-256 ")
    output = asyncio.create_task(process.stdout.read())
    return Serving(process, match.group(1), int(match.group(2)), ca_line.split()[-1], output)


@dataclass
class ServerProcess:
    """``serve`` without an event loop (for module-wide fixtures and scripts); output goes to a file."""

    popen: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    port: int
    fingerprint: str

    @classmethod
    def start(
        cls, data_dir: Path, *extra: str, wait: float = 60, env: dict[str, str] | None = None
    ) -> ServerProcess:
        """Start and wait for the ready lines (the output goes to ``<data_dir>.serve.log``).

        Raises RuntimeError if the server exits or stays silent first.
        """
        data_dir.mkdir(parents=True, exist_ok=True)
        log = data_dir.parent / f"{data_dir.name}.serve.log"
        command = ["-m", "est_tools.standalone", "serve", "--data-dir", str(data_dir), "--port", "0", *extra]
        with log.open("wb") as output:
            popen = subprocess.Popen(
                [sys.executable, *command], env=env or environment(), stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            ready = _READY.search(text)
            fingerprint = re.search(r"CA SHA-256 ([0-9a-f]{64})\n", text)
            if ready and fingerprint:
                return cls(popen, data_dir, log, int(ready.group(2)), fingerprint.group(1))
            if popen.poll() is not None:
                raise RuntimeError(f"est-server exited with {popen.returncode}: {text[-2000:]}")
            time.sleep(0.02)
        popen.kill()
        popen.wait()
        raise RuntimeError(f"est-server did not say where it listens within {wait} s")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int:
        """SIGTERM and wait; the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL, as a power cut would, and reap."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
