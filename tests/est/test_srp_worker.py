"""The SRP worker: a process of its own for the hub's slow SRP steps, started and stopped as needed."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
import signal
import subprocess
import sys

import pytest
import srp

from custom_components.est_pairing.est import srp6a
from custom_components.est_pairing.est.errors import Busy, CAFailure
from custom_components.est_pairing.est.srp6a import b64, from_b64
from custom_components.est_pairing.est.srp_worker import SCRIPT, SrpWorker
from custom_components.est_pairing.est.verifiers import PinVerifier

PIN = "482913"


async def test_it_makes_and_checks_verifiers_in_another_process() -> None:
    worker = SrpWorker()
    try:
        made = await worker.make_verifier("oven", PIN)
        assert worker.pid is not None and worker.pid != os.getpid()
        assert made.appliance_id == "oven"
        assert made.matches(PIN)  # what the library computes in this process agrees
        assert len(made.salt) == srp6a.SALT_BYTES
        assert await worker.pin_matches(made, PIN)
        assert not await worker.pin_matches(made, "482914")
        assert worker.started == 1  # one long-lived child for all of them
    finally:
        await worker.close()
    assert worker.pid is None


def test_the_script_runs_alone_on_the_standard_library_and_srp() -> None:
    """``python -I srp6a.py`` as the worker starts it: no package around it, only the path it is given."""
    record = PinVerifier.create("oven", PIN)
    srp_root = str(Path(srp.__file__).parents[1])
    fields = {"id": "oven", "salt": b64(record.salt), "verifier": b64(record.verifier)}
    lines = [
        {"path": [*sys.path[1:], srp_root], "backend": "srp._pysrp"},  # the pure-Python backend, too
        {"n": 1, "op": "matches", **fields, "pin": PIN},
        {"n": 2, "op": "matches", **fields, "pin": "000000"},
        {"n": 3, "op": "shuffle", **fields},
    ]
    finished = subprocess.run(
        [sys.executable, "-I", str(SCRIPT)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answers = [json.loads(line) for line in finished.stdout.splitlines()]
    assert answers == [
        {"n": 1, "ok": {"matches": True}},
        {"n": 2, "ok": {"matches": False}},
        {"n": 3, "error": "ValueError"},
    ]


def test_a_request_that_fails_gets_its_errors_name_and_never_its_fields() -> None:
    answers = io.StringIO()
    requests = [
        "not json\n",
        json.dumps({"n": 4, "op": "verifier", "id": "oven"}) + "\n",  # no pin
        json.dumps(
            {
                "n": 5,
                "op": "challenge",
                "id": "oven",
                "salt": "!!",
                "verifier": "AQ==",
                "A": "AQ==",
                "b": "AQ==",
            }
        )
        + "\n",
        json.dumps({"n": 6, "op": "verifier", "id": "oven", "pin": "s3cret"}) + "\n",
    ]
    srp6a.serve(srp, requests, answers)
    replies = [json.loads(line) for line in answers.getvalue().splitlines()]
    assert replies[:3] == [
        {"n": None, "error": "JSONDecodeError"},
        {"n": 4, "error": "KeyError"},
        {"n": 5, "error": "Error"},  # binascii.Error: the salt is not base64
    ]
    assert set(replies[3]["ok"]) == {"salt", "verifier"}
    assert "s3cret" not in answers.getvalue()


def test_its_main_takes_the_path_and_backend_from_its_first_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # main replaces it
    given = [entry for entry in sys.path if entry]
    stdin = io.StringIO(
        json.dumps({"path": given, "backend": "srp._pysrp"})
        + "\n"
        + json.dumps({"n": 1, "op": "verifier", "id": "oven", "pin": PIN})
        + "\n"
    )
    stdout = io.StringIO()
    srp6a.main(stdin, stdout)
    assert sys.path == given
    answer = json.loads(stdout.getvalue())["ok"]
    assert PinVerifier("oven", from_b64(answer["salt"]), from_b64(answer["verifier"])).matches(PIN)


async def test_it_stops_when_idle_and_starts_again_on_demand() -> None:
    worker = SrpWorker(idle=0.05)
    try:
        record = await worker.make_verifier("oven", PIN)
        first = worker.pid
        for _ in range(200):
            if worker.pid is None:
                break
            await asyncio.sleep(0.01)
        stopped = worker.pid
        assert stopped is None  # after a quiet while
        assert await worker.pin_matches(record, PIN)
        restarted = worker.pid
        assert restarted not in (None, first)
        assert worker.started == 2
    finally:
        await worker.close()


async def test_a_worker_that_dies_fails_what_it_held_and_is_started_again() -> None:
    worker = SrpWorker(backend="srp._pysrp")  # slow enough to be killed mid-step
    try:
        record = await worker.make_verifier("oven", PIN)
        pid = worker.pid
        assert pid is not None
        checking = asyncio.create_task(worker.pin_matches(record, PIN))
        await asyncio.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(CAFailure, match="stopped before it answered"):
            await checking
        assert await worker.pin_matches(record, PIN)
        assert worker.pid not in (None, pid)
    finally:
        await worker.close()


async def test_its_queue_is_bounded() -> None:
    worker = SrpWorker(queue=2)
    try:
        outcomes = await asyncio.gather(
            *(worker.make_verifier("oven", PIN) for _ in range(5)), return_exceptions=True
        )
        busy = [outcome for outcome in outcomes if isinstance(outcome, Busy)]
        assert len(busy) == 3
        assert str(busy[0]) == "the hub is busy with PIN checks; try again shortly"
        assert busy[0].retry_after == 1
        assert all(isinstance(outcome, PinVerifier) for outcome in outcomes if outcome not in busy)
    finally:
        await worker.close()


async def test_a_step_that_takes_too_long_stops_the_worker() -> None:
    worker = SrpWorker(timeout=0.001)
    try:
        with pytest.raises(Busy, match="took too long"):
            await worker.make_verifier("oven", PIN)
        assert worker.pid is None
        worker.timeout = 30
        assert (await worker.make_verifier("oven", PIN)).matches(PIN)
        assert worker.started == 2
    finally:
        await worker.close()


async def test_a_worker_that_cannot_start_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    worker = SrpWorker()
    with pytest.raises(CAFailure, match="could not start the SRP worker"):
        await worker.make_verifier("oven", PIN)


async def test_an_answer_it_cannot_read_stops_what_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker that writes anything but its answers (a broken install, say) fails the step, not the hub."""
    babbling = tmp_path / "babbling.py"
    babbling.write_text("import sys\nsys.stdin.readline()\nprint('Segmentation fault?', flush=True)\n")
    monkeypatch.setattr("custom_components.est_pairing.est.srp_worker.SCRIPT", babbling)
    worker = SrpWorker()
    try:
        with pytest.raises(CAFailure, match="stopped before it answered"):
            await worker.make_verifier("oven", PIN)
    finally:
        await worker.close()
    assert "The SRP worker's answer could not be read (JSONDecodeError)" in caplog.text
    assert PIN not in caplog.text
