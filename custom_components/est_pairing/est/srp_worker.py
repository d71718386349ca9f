"""The SRP worker process, from the event loop's side: the hub's big-number work, off its interpreter.

One long-lived child (``python -I srp6a.py``: the standard library and ``srp`` only, never Home
Assistant nor the integration's ``__init__``), started on the first request, stopped after
:data:`~.limits.SRP_WORKER_IDLE` seconds without one and when the service stops, started again if
it died. Requests go to it as JSON lines and are answered in order. At most
:data:`~.limits.SRP_WORKER_QUEUE` wait at once (more are refused as busy), and each must be
answered within :data:`~.limits.SRP_WORKER_TIMEOUT` seconds, else the child is stopped (the next
request starts another).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
import json
import logging
from pathlib import Path
import sys
from typing import Any, Final

from . import srp6a
from .errors import Busy, CAFailure
from .limits import SRP_WORKER_IDLE, SRP_WORKER_QUEUE, SRP_WORKER_TIMEOUT
from .srp6a import b64, from_b64
from .verifiers import PinVerifier

_LOGGER = logging.getLogger(__name__)
SCRIPT: Final = Path(srp6a.__file__)
_STOP_WAIT: Final = 5.0  # seconds a child has to leave once its input is closed


@dataclass(slots=True)
class _Child:
    process: asyncio.subprocess.Process
    reader: asyncio.Task[None]
    waiting: dict[int, asyncio.Future[dict[str, Any]]]


class SrpWorker:
    """:class:`~.verifiers.SrpWork` in a child process (see the module's description)."""

    def __init__(
        self,
        *,
        idle: float = SRP_WORKER_IDLE,
        timeout: float = SRP_WORKER_TIMEOUT,
        queue: int = SRP_WORKER_QUEUE,
        backend: str = srp6a.BACKEND_MODULE,
    ) -> None:
        self.idle = idle
        self.timeout = timeout
        self.queue = queue
        self.backend = backend  # the module the child imports: "srp", or one of its backends
        self._child: _Child | None = None
        self._starting: asyncio.Lock | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_stop: asyncio.Task[None] | None = None
        self._numbers = 0
        self.started = 0  # children started so far

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        return self._child.process.pid if self._child is not None else None

    # --- the work ---------------------------------------------------------------------------------

    async def make_verifier(self, appliance_id: str, pin: str) -> PinVerifier:
        """See :class:`~.verifiers.SrpWork`."""
        answer = await self._call("verifier", id=appliance_id, pin=pin)
        return PinVerifier(appliance_id, from_b64(answer["salt"]), from_b64(answer["verifier"]))

    async def pin_matches(self, verifier: PinVerifier, pin: str) -> bool:
        """See :class:`~.verifiers.SrpWork`."""
        answer = await self._call("matches", **_record(verifier), pin=pin)
        return answer["matches"] is True

    async def challenge(self, verifier: PinVerifier, a_public: bytes, b_secret: bytes) -> bytes:
        """See :class:`~.verifiers.SrpWork`."""
        answer = await self._call("challenge", **_record(verifier), A=b64(a_public), b=b64(b_secret))
        return from_b64(answer["B"])

    async def verify(
        self, verifier: PinVerifier, a_public: bytes, b_secret: bytes, proof: bytes
    ) -> tuple[bytes, bytes] | None:
        """See :class:`~.verifiers.SrpWork`."""
        answer = await self._call(
            "verify", **_record(verifier), A=b64(a_public), b=b64(b_secret), M1=b64(proof)
        )
        if answer["M2"] is None or answer["K"] is None:
            return None
        return from_b64(answer["M2"]), from_b64(answer["K"])

    # --- the child --------------------------------------------------------------------------------

    async def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        child = self._child
        if child is not None and len(child.waiting) >= self.queue:
            raise Busy("the hub is busy with PIN checks; try again shortly", 1)
        child = await self._running()
        if len(child.waiting) >= self.queue:  # others were queued while it started
            raise Busy("the hub is busy with PIN checks; try again shortly", 1)
        self._cancel_idle_timer()
        self._numbers += 1
        number = self._numbers
        answer = child.waiting[number] = asyncio.get_running_loop().create_future()
        try:
            assert child.process.stdin is not None  # noqa: S101 - started with a pipe
            child.process.stdin.write(json.dumps({"n": number, "op": op, **fields}).encode() + b"\n")
            try:
                async with asyncio.timeout(self.timeout):
                    outcome = await asyncio.shield(answer)
            except TimeoutError:
                _LOGGER.warning("The SRP worker took over %g s for one step: stopping it", self.timeout)
                await self._stop(child)
                raise Busy("a PIN check took too long; try again", 1) from None
        finally:
            child.waiting.pop(number, None)
            self._arm_idle_timer(child)
        if "ok" not in outcome:
            raise CAFailure(f"the SRP worker could not complete a step ({outcome.get('error')})")
        result: dict[str, Any] = outcome["ok"]
        return result

    async def _running(self) -> _Child:
        """The child, started now if none runs (one start at a time)."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if (child := self._child) is not None and (
                child.reader.done() or child.process.returncode is not None
            ):
                _LOGGER.warning(
                    "The SRP worker stopped (exit status %s): starting it again", child.process.returncode
                )
                await self._stop(child)  # it died: reap it
            if self._child is None:
                self._child = await self._start()
            return self._child

    async def _start(self) -> _Child:
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",  # no environment, no user site, not the script's directory: stdlib and srp only
                str(SCRIPT),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
        except OSError as err:
            raise CAFailure(f"could not start the SRP worker ({err.strerror or err})") from err
        assert process.stdin is not None  # noqa: S101 - started with a pipe
        process.stdin.write(json.dumps({"path": sys.path, "backend": self.backend}).encode() + b"\n")
        self.started += 1
        waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        reader = asyncio.get_running_loop().create_task(self._read(process, waiting), name="SRP worker")
        _LOGGER.debug("Started the SRP worker (pid %s)", process.pid)
        return _Child(process, reader, waiting)

    @staticmethod
    async def _read(
        process: asyncio.subprocess.Process, waiting: dict[int, asyncio.Future[dict[str, Any]]]
    ) -> None:
        """Hand each answer to its request; when the child ends, fail the ones still waiting."""
        assert process.stdout is not None  # noqa: S101 - started with a pipe
        try:
            while line := await process.stdout.readline():
                answer = json.loads(line)
                future = waiting.get(answer.get("n"))
                if future is not None and not future.done():
                    future.set_result(answer)
        except (ValueError, ConnectionError) as err:
            _LOGGER.warning("The SRP worker's answer could not be read (%s)", type(err).__name__)
        finally:
            for future in waiting.values():
                if not future.done():
                    future.set_exception(CAFailure("the SRP worker stopped before it answered"))

    def _arm_idle_timer(self, child: _Child) -> None:
        if self._child is child and not child.waiting:
            self._cancel_idle_timer()
            self._idle_timer = asyncio.get_running_loop().call_later(self.idle, self._stop_when_idle, child)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _stop_when_idle(self, child: _Child) -> None:
        self._idle_timer = None
        if self._child is child and not child.waiting:
            self._idle_stop = asyncio.get_running_loop().create_task(
                self._stop(child), name="SRP worker stop"
            )

    async def _stop(self, child: _Child) -> None:
        """Let the child leave (its input closed), kill it if it does not; its waiting requests fail."""
        if self._child is child:
            self._child = None
            self._cancel_idle_timer()
        process = child.process
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            async with asyncio.timeout(_STOP_WAIT):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        await child.reader
        _LOGGER.debug("Stopped the SRP worker (pid %s)", process.pid)

    async def close(self) -> None:
        """Stop the child, if one runs (the service stops); a later request starts another."""
        if (child := self._child) is not None:
            await self._stop(child)
        if self._idle_stop is not None:
            await self._idle_stop
            self._idle_stop = None


def _record(verifier: PinVerifier) -> dict[str, str]:
    return {"id": verifier.appliance_id, "salt": b64(verifier.salt), "verifier": b64(verifier.verifier)}
