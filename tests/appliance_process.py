"""The reference appliance as a user starts it (``python -m est_tools.appliance``), read line by line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
import sys

ROOT = Path(__file__).parents[1]


class ApplianceProcess:
    """One running appliance: wait for what it prints, and for its exit code."""

    def __init__(self, process: asyncio.subprocess.Process, step_timeout: float) -> None:
        self.process = process
        self.step_timeout = step_timeout
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str, step_timeout: float = 60.0) -> ApplianceProcess:
        """``scripts/appliance ARGS``: its standard output and error, as one stream."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "est_tools.appliance",
            *args,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(process, step_timeout)

    async def expect(self, text: str) -> str:
        """The next output line that contains ``text``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(self.step_timeout):
            while line := (await self.process.stdout.readline()).decode():
                self.lines.append(line.rstrip())
                if text in line:
                    return line.rstrip()
        raise AssertionError(f"the appliance ended without printing {text!r}:\n" + "\n".join(self.lines))

    async def exit_code(self) -> int:
        """Wait for the process to end; the rest of its output goes to ``lines``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(self.step_timeout):
            rest = (await self.process.stdout.read()).decode()
            self.lines += rest.splitlines()
            return await self.process.wait()

    @property
    def output(self) -> str:
        """Everything it printed so far, a line each."""
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """Stop it if it still runs (a test that ends early)."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
