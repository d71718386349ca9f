"""The ledger and its journal: durable before the response, crash-tolerant, compacting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
import errno
import json
import os
from pathlib import Path
import stat

from cryptography import x509
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.errors import CAFailure
from custom_components.est_pairing.est.ledger import CertificateRecord, Ledger, LedgerListener, Supersession
from custom_components.est_pairing.est.storage import Event, JournalFile, JsonFileStore

from . import forge

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def issue(ca: HouseholdCA, appliance_id: str = "oven") -> x509.Certificate:
    """A certificate for a fresh key."""
    return forge.issued_by(ca, forge.new_key().public_key(), common_name=appliance_id, not_before=NOW)


async def test_records_survive_a_restart(tmp_path: Path, ca: HouseholdCA) -> None:
    journal = JournalFile(tmp_path / "ledger.jsonl")
    ledger = Ledger(journal)
    first = await ledger.record_issued(issue(ca), "oven")
    await ledger.record_issued(issue(ca, "fridge"), "fridge")
    await ledger.revoke(first.serial_number, reason=x509.ReasonFlags.key_compromise, when=NOW)
    assert stat.S_IMODE((tmp_path / "ledger.jsonl").stat().st_mode) == 0o600

    reloaded = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
    await reloaded.load()
    assert len(reloaded) == 2
    record = reloaded.get(first.serial_number)
    assert record is not None and record.revoked and record.revocation_reason == "keyCompromise"
    assert reloaded.crl_number == 1
    assert [r.serial_number for r in reloaded.revoked()] == [first.serial_number]
    assert reloaded.latest("fridge") is not None


async def test_concurrent_issues_share_one_write(tmp_path: Path, ca: HouseholdCA) -> None:
    writes: list[int] = []

    class CountingJournal(JournalFile):
        async def append(self, events: object) -> None:
            writes.append(len(events))  # type: ignore[arg-type]
            await super().append(events)  # type: ignore[arg-type]

    ledger = Ledger(CountingJournal(tmp_path / "ledger.jsonl"))
    certificates = [issue(ca, f"a{i}") for i in range(20)]
    await asyncio.gather(*(ledger.record_issued(c, f"a{i}") for i, c in enumerate(certificates)))
    assert sum(writes) == 20
    assert len(writes) < 20
    assert len(ledger) == 20


async def test_a_torn_final_line_is_dropped_and_cut_before_the_next_append(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(JournalFile(path))
    kept = await ledger.record_issued(issue(ca), "oven")
    with path.open("ab") as handle:  # a crash in the middle of an append
        handle.write(b'{"op":"issued","serial":"ab')
    reloaded = Ledger(JournalFile(path))
    await reloaded.load()
    assert len(reloaded) == 1
    await reloaded.record_issued(issue(ca, "fridge"), "fridge")
    again = Ledger(JournalFile(path))
    await again.load()
    assert {r.appliance_id for r in (again.get(kept.serial_number), again.latest("fridge")) if r} == {
        "oven",
        "fridge",
    }
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_short_write_is_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = JournalFile(tmp_path / "ledger.jsonl")
    events: list[Event] = [{"op": "meta", "crl_number": n} for n in range(3)]
    real_write = os.write
    calls: list[int] = []

    def short_write(descriptor: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(descriptor, bytes(data)[: max(1, len(data) // 2)])  # as a nearly full disk may

    monkeypatch.setattr(os, "write", short_write)
    journal.append_sync(events)
    assert len(calls) > 1
    assert journal.read_sync() == events


def test_a_write_that_fails_midway_leaves_the_journal_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = JournalFile(tmp_path / "ledger.jsonl")
    journal.append_sync([{"op": "meta", "crl_number": 0}])
    before = journal.path.read_bytes()
    real_write = os.write

    def first_line_then_disk_full(descriptor: int, data: bytes | memoryview) -> int:
        line = bytes(data).index(b"\n") + 1
        if line < len(data):
            return real_write(descriptor, bytes(data)[:line])  # a whole line: it would look complete
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", first_line_then_disk_full)
    with pytest.raises(OSError, match="No space left"):
        journal.append_sync([{"op": "meta", "crl_number": 1}, {"op": "meta", "crl_number": 2}])
    assert journal.path.read_bytes() == before


async def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"op": "meta", "crl_number": 0}\nnot json\n{"op": "meta", "crl_number": 0}\n')
    with pytest.raises(ValueError, match=":2 is not a JSON event"):
        await JournalFile(path).read()


async def test_compaction_keeps_meaning_and_bounds_the_file(tmp_path: Path, ca: HouseholdCA) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(JournalFile(path))
    records = [await ledger.record_issued(issue(ca, f"a{i}"), f"a{i}") for i in range(40)]
    for record in records:
        await ledger.revoke(record.serial_number, reason=x509.ReasonFlags.superseded, when=NOW)
    lines = path.read_text().splitlines()
    assert len(lines) < 80  # compacted at least once: 40 issues + 40 revocations
    reloaded = Ledger(JournalFile(path))
    await reloaded.load()
    assert len(reloaded) == 40
    assert all(r.revoked for r in map(reloaded.get, (r.serial_number for r in records)) if r)
    assert reloaded.crl_number == 40


async def test_serials_are_reserved_once(ca: HouseholdCA, tmp_path: Path) -> None:
    ledger = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
    certificate = issue(ca)
    assert ledger.reserve_serial(certificate.serial_number)
    assert not ledger.reserve_serial(certificate.serial_number)
    await ledger.record_issued(certificate, "oven")
    assert not ledger.reserve_serial(certificate.serial_number)


class Seen(LedgerListener):
    """The records the ledger told about; a record of ``broken_on`` makes it fail."""

    def __init__(self, broken_on: str | None = None) -> None:
        self.records: list[tuple[str, bool]] = []
        self.broken_on = broken_on

    def certificate_recorded(self, record: CertificateRecord) -> None:
        if record.appliance_id == self.broken_on:
            raise RuntimeError("listener bug")
        self.records.append((record.appliance_id, record.revoked))


async def test_the_listener_sees_every_change_once_written(tmp_path: Path, ca: HouseholdCA) -> None:
    seen = Seen()
    ledger = Ledger(JournalFile(tmp_path / "ledger.jsonl"), seen)
    record = await ledger.record_issued(issue(ca), "oven")
    await ledger.revoke_appliance("oven", reason=x509.ReasonFlags.cessation_of_operation, when=NOW)
    await ledger.record_issued(issue(ca, "fridge"), "fridge")
    assert seen.records == [("oven", False), ("oven", True), ("fridge", False)]
    assert record.revoked
    reloaded = Ledger(JournalFile(tmp_path / "ledger.jsonl"), seen)
    await reloaded.load()  # what is read back was told when written: not again
    assert len(seen.records) == 3


async def test_a_failing_listener_does_not_stop_the_ledger(
    tmp_path: Path, ca: HouseholdCA, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen(broken_on="oven")
    ledger = Ledger(JournalFile(tmp_path / "ledger.jsonl"), seen)
    async with asyncio.timeout(5):  # one batch: every event in it is applied and answered
        await asyncio.gather(*(ledger.record_issued(issue(ca, name), name) for name in ("oven", "fridge")))
        await ledger.record_issued(issue(ca, "kettle"), "kettle")  # and the writer goes on
    assert [appliance_id for appliance_id, _ in seen.records] == ["fridge", "kettle"]
    assert sorted(ledger.appliances()) == ["fridge", "kettle", "oven"]
    assert "listener bug" in caplog.text


async def test_json_store_writes_atomically_and_privately(tmp_path: Path) -> None:
    store = JsonFileStore(tmp_path / "sub" / "state.json")
    assert await store.load() is None
    await store.save({"a": 1})
    await store.save({"a": 2})
    assert await store.load() == {"a": 2}
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["state.json"]
    store.path.write_text("[1]")
    with pytest.raises(TypeError):
        await store.load()


async def test_a_compaction_hands_the_journal_a_sequence_of_every_record(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    compacted: list[list[dict[str, object]]] = []

    class Journal(JournalFile):
        async def compact(self, events: Sequence[dict[str, object]]) -> None:
            as_read = [events[i] for i in range(len(events))]
            assert list(events) == as_read == list(events[:]) and events[-1] == as_read[-1]
            compacted.append(as_read)
            await super().compact(events)

    ledger = Ledger(Journal(tmp_path / "ledger.jsonl"))
    records = [await ledger.record_issued(issue(ca, f"a{i}"), f"a{i}") for i in range(70)]
    assert compacted, "70 events are more than the journal keeps before compacting"
    snapshot = compacted[-1]
    assert snapshot[0] == {"op": "meta", "crl_number": 0}
    serials = [format(r.serial_number, "x") for r in records]
    assert [event["serial"] for event in snapshot[1:]] == serials[: len(snapshot) - 1]


class FlakyJournal(JournalFile):
    """Fails the next append or compaction when told to, as a full disk would."""

    fail_append = False
    fail_compact = False

    async def append(self, events: Sequence[Event]) -> None:
        if self.fail_append:
            self.fail_append = False
            raise OSError(28, "No space left on device")
        await super().append(events)

    async def compact(self, events: Sequence[Event]) -> None:
        if self.fail_compact:
            self.fail_compact = False
            raise OSError(28, "No space left on device")
        await super().compact(events)


class HeldJournal(FlakyJournal):
    """Holds each append until released, so a caller can be cancelled while its event is written."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def append(self, events: Sequence[Event]) -> None:
        self.writing.set()
        await self.release.wait()
        await super().append(events)


@pytest.mark.parametrize("fail", [False, True], ids=["written", "write fails"])
async def test_a_caller_cancelled_during_the_write_leaves_the_others_answered(
    tmp_path: Path, ca: HouseholdCA, fail: bool
) -> None:
    journal = HeldJournal(tmp_path / "ledger.jsonl")
    ledger = Ledger(journal)
    left, stayed = issue(ca, "oven"), issue(ca, "fridge")
    leaving = asyncio.create_task(ledger.record_issued(left, "oven"))
    staying = asyncio.create_task(ledger.record_issued(stayed, "fridge"))
    await journal.writing.wait()
    leaving.cancel()
    journal.fail_append = fail
    journal.release.set()
    # A writer that stopped on the cancelled caller's future would never answer the other one.
    done, _ = await asyncio.wait({staying}, timeout=10)
    assert staying in done
    if fail:
        with pytest.raises(CAFailure, match="could not record the certificate"):
            staying.result()
        assert len(ledger) == 0
    else:
        record = staying.result()
        assert record.appliance_id == "fridge"
        # The cancelled caller's event was in the write: it is recorded, as a crash after it would leave it.
        assert set(ledger.appliances()) == {"oven", "fridge"}
    with pytest.raises(asyncio.CancelledError):
        await leaving
    await ledger.record_issued(issue(ca, "kettle"), "kettle")  # the writer goes on
    reloaded = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
    await reloaded.load()
    assert len(reloaded) == len(ledger) == (1 if fail else 3)


async def test_a_failed_write_issues_nothing_and_the_next_one_works(tmp_path: Path, ca: HouseholdCA) -> None:
    journal = FlakyJournal(tmp_path / "ledger.jsonl")
    ledger = Ledger(journal)
    journal.fail_append = True
    certificate = issue(ca)
    assert ledger.reserve_serial(certificate.serial_number)
    with pytest.raises(CAFailure, match="could not record the certificate"):
        await ledger.record_issued(certificate, "oven")
    assert len(ledger) == 0
    assert ledger.reserve_serial(certificate.serial_number)  # given back
    ledger.release_serial(certificate.serial_number)
    await ledger.record_issued(issue(ca), "oven")
    reloaded = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
    await reloaded.load()
    assert len(reloaded) == 1


async def test_a_failed_compaction_is_tried_again(tmp_path: Path, ca: HouseholdCA) -> None:
    journal = FlakyJournal(tmp_path / "ledger.jsonl")
    ledger = Ledger(journal)
    journal.fail_compact = True
    records = [await ledger.record_issued(issue(ca, f"a{i}"), f"a{i}") for i in range(70)]
    for record in records:
        await ledger.revoke(record.serial_number, reason=x509.ReasonFlags.superseded, when=NOW)
    assert not journal.fail_compact  # it failed once ...
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert len(lines) < 140  # ... and compacted later
    reloaded = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
    await reloaded.load()
    assert len(reloaded) == 70
    assert reloaded.crl_number == 70
    with pytest.raises(KeyError):
        await ledger.revoke(12345, reason=x509.ReasonFlags.superseded, when=NOW)


async def test_a_revocation_in_a_compacted_copy_wins_over_an_older_copy(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    """A crash after a compaction was written but before an older copy was dropped reads both.

    (Home Assistant kept a snapshot beside the journal in earlier versions: it is read first.)
    """
    certificate = issue(ca)
    older = {
        "op": "issued",
        "serial": format(certificate.serial_number, "x"),
        "appliance": "oven",
        "subject": "CN=oven",
        "key": "ab" * 32,
        "not_before": int(NOW.timestamp()),
        "not_after": int(NOW.timestamp()) + 86400,
    }
    compacted = [
        {"op": "meta", "crl_number": 1},
        {**older, "revoked_at": int(NOW.timestamp()) + 60, "reason": "keyCompromise"},
    ]
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in [older, *compacted]))
    ledger = Ledger(JournalFile(path))
    await ledger.load()
    record = ledger.get(certificate.serial_number)
    assert record is not None
    assert record.revoked and record.revocation_reason == "keyCompromise"
    assert [r.serial_number for r in ledger.revoked()] == [certificate.serial_number]
    assert ledger.crl_number == 1


async def test_certificates_recorded_at_once_for_one_appliance_count_each_other(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    """However many arrive in one write, the appliance keeps its newest two valid certificates."""
    ledger = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
    supersession = Supersession(NOW, keep=2)
    certificates = [issue(ca) for _ in range(12)]
    await asyncio.gather(*(ledger.record_issued(c, "oven", supersession=supersession) for c in certificates))
    valid = [r.serial_number for r in ledger.for_appliance("oven") if not r.revoked]
    assert valid == [c.serial_number for c in certificates[-2:]]
    assert {r.revocation_reason for r in ledger.for_appliance("oven") if r.revoked} == {"superseded"}
    assert ledger.crl_number == 10


async def test_renewals_and_supersessions_survive_compaction(tmp_path: Path, ca: HouseholdCA) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(JournalFile(path))
    first = await ledger.record_issued(issue(ca), "oven")
    renewed = await ledger.record_issued(
        issue(ca), "oven", renews=first.serial_number, supersession=Supersession(NOW, keep=2)
    )
    for index in range(100):  # enough events for a compaction
        await ledger.record_issued(issue(ca, f"a{index}"), f"a{index}")
    lost = await ledger.record_issued(
        issue(ca), "oven", supersession=Supersession(NOW, keep=2, also=(renewed.serial_number,))
    )
    await ledger.wait_idle()
    assert json.loads(path.read_text().splitlines()[0])["op"] == "meta"  # compacted
    reloaded = Ledger(JournalFile(path))
    await reloaded.load()
    again = reloaded.get(first.serial_number)
    assert again is not None and again.renewed_by == renewed.serial_number and not again.revoked
    was_renewed = reloaded.get(renewed.serial_number)
    assert was_renewed is not None and was_renewed.renews == first.serial_number
    assert was_renewed.revocation_reason == "superseded"  # named in ``also``, though among the newest two
    assert [r.serial_number for r in reloaded.for_appliance("oven") if not r.revoked] == [
        first.serial_number,
        lost.serial_number,
    ]
