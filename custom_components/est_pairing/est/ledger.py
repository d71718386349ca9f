"""The ledger of issued certificates: recorded durably before any response leaves.

Events go to a :class:`~.storage.JournalStore`. Concurrent enrollments share one write and one fsync
(group commit; while several arrive at once, each write waits 2 ms for more), so throughput does not
hinge on the disk's sync latency, and nothing here scans the whole ledger: enrollment cost does not
grow with the number of certificates already issued.

A certificate may be recorded with a :class:`Supersession`: the appliance's oldest valid certificates
beyond a bound are revoked (reason ``superseded``) in the same write, so that no answer leaves while
an appliance holds more valid certificates than the bound, however many requests arrive at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
import logging
import sys
from typing import Any, overload

from cryptography import x509

from .ca import RevokedCertificate
from .errors import CAFailure
from .fingerprints import public_key_fingerprint
from .storage import Event, JournalStore

_LOGGER = logging.getLogger(__name__)
_COMPACT_MIN = 64  # compact once the journal holds this many events beyond the records themselves
_GROUP_DELAY = 0.002  # seconds a busy writer waits before the next write, gathering events to share it


@dataclass(slots=True)
class CertificateRecord:
    """One issued certificate. Times are POSIX seconds (compact: the ledger may hold 10^5 of them)."""

    serial_number: int
    appliance_id: str
    subject: str
    key_fingerprint: str
    not_before: int
    not_after: int
    revoked_at: int | None = None
    revocation_reason: str | None = None
    renews: int | None = None  # the serial of the certificate this one renewed
    renewed_by: int | None = None  # the serial of the certificate that renewed this one

    @property
    def revoked(self) -> bool:
        """Whether the certificate was revoked."""
        return self.revoked_at is not None

    def expired(self, now: datetime) -> bool:
        """Whether the certificate is past its notAfter."""
        return now.timestamp() >= self.not_after

    @property
    def expires(self) -> datetime:
        """NotAfter as an aware datetime."""
        return datetime.fromtimestamp(self.not_after, UTC)


class LedgerListener:
    """What the ledger tells the application around it; does nothing here."""

    def certificate_recorded(self, record: CertificateRecord) -> None:
        """A certificate was recorded, or its record changed (revoked, renewed), and is on disk."""


@dataclass(frozen=True, slots=True)
class Supersession:
    """What recording a certificate supersedes, revoked at ``when`` in the same write.

    The appliance's oldest valid certificates beyond ``keep`` (the new one counted), and ``also``
    these, if still valid.
    """

    when: datetime
    keep: int
    also: tuple[int, ...] = ()


@dataclass(slots=True)
class _Queued:
    event: Event
    future: asyncio.Future[None]
    supersession: Supersession | None = None


class Ledger:
    """Issued certificates by serial, by appliance, and the revoked ones for the CRL."""

    def __init__(self, journal: JournalStore, listener: LedgerListener | None = None) -> None:
        self._journal = journal
        self._listener = listener or LedgerListener()
        self._records: dict[int, CertificateRecord] = {}
        self._by_appliance: dict[str, list[int]] = {}
        self._revoked: dict[int, CertificateRecord] = {}
        self._reserved: set[int] = set()
        self._crl_number = 0
        self._events_since_compaction = 0
        # Appliance id -> how many of its oldest certificates are revoked or expired for good: the
        # search for its valid ones starts there (kept only for appliances issued to since loading).
        self._dead_before: dict[str, int] = {}
        self._queue: list[_Queued] = []
        self._writer: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Replay the journal."""
        events = await self._journal.read()
        for event in events:
            self._apply(event)
        self._events_since_compaction = max(0, len(events) - len(self._records) - 1)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def crl_number(self) -> int:
        """Increases with every revocation; the CRL number starts with it (the registrar adds the time)."""
        return self._crl_number

    def get(self, serial_number: int) -> CertificateRecord | None:
        """The record of one certificate."""
        return self._records.get(serial_number)

    def for_appliance(self, appliance_id: str) -> list[CertificateRecord]:
        """Every certificate an appliance was issued, oldest first."""
        return [self._records[serial] for serial in self._by_appliance.get(appliance_id, ())]

    def latest(self, appliance_id: str) -> CertificateRecord | None:
        """The appliance's newest certificate."""
        serials = self._by_appliance.get(appliance_id)
        return self._records[serials[-1]] if serials else None

    def appliances(self) -> list[str]:
        """Every appliance id with at least one certificate."""
        return list(self._by_appliance)

    def revoked(self) -> Iterator[RevokedCertificate]:
        """CRL entries for every revoked certificate."""
        for record in self._revoked.values():
            yield RevokedCertificate(
                serial_number=record.serial_number,
                revoked_at=datetime.fromtimestamp(record.revoked_at or 0, UTC),
                reason=x509.ReasonFlags(record.revocation_reason or "unspecified"),
            )

    def reserve_serial(self, serial_number: int) -> bool:
        """Claim a serial for a certificate about to be signed; False if it was ever used."""
        if serial_number in self._records or serial_number in self._reserved:
            return False
        self._reserved.add(serial_number)
        return True

    def release_serial(self, serial_number: int) -> None:
        """Give back a reserved serial that was not issued after all."""
        self._reserved.discard(serial_number)

    async def record_issued(
        self,
        certificate: x509.Certificate,
        appliance_id: str,
        *,
        key_fingerprint: str | None = None,
        renews: int | None = None,
        supersession: Supersession | None = None,
    ) -> CertificateRecord:
        """Record a certificate durably; only then may it be handed out.

        ``key_fingerprint`` is the SHA-256 of the certificate's public key, when the caller has it
        already (the registrar does: it is the key the owner approved); otherwise it is computed.
        ``renews``: the serial of the certificate this one renews (it records its successor).
        ``supersession``: what the certificate supersedes, revoked in the same write.
        """
        if key_fingerprint is None:
            key_fingerprint = public_key_fingerprint(certificate.public_key())
        event: Event = {
            "op": "issued",
            "serial": format(certificate.serial_number, "x"),
            "appliance": appliance_id,
            "subject": certificate.subject.rfc4514_string(),
            "key": key_fingerprint,
            "not_before": int(certificate.not_valid_before_utc.timestamp()),
            "not_after": int(certificate.not_valid_after_utc.timestamp()),
        }
        if renews is not None:
            event["renews"] = format(renews, "x")
        try:
            await self._commit(event, supersession)
        finally:
            self._reserved.discard(certificate.serial_number)
        return self._records[certificate.serial_number]

    async def revoke(
        self, serial_number: int, *, reason: x509.ReasonFlags, when: datetime
    ) -> CertificateRecord:
        """Revoke one certificate (idempotent)."""
        record = self._records.get(serial_number)
        if record is None:
            raise KeyError(serial_number)
        if not record.revoked:
            await self._commit(_revocation_event(serial_number, int(when.timestamp()), reason))
        return record

    async def revoke_appliance(
        self, appliance_id: str, *, reason: x509.ReasonFlags, when: datetime
    ) -> list[CertificateRecord]:
        """Revoke every unrevoked certificate of an appliance; returns them."""
        records = [r for r in self.for_appliance(appliance_id) if not r.revoked]
        for record in records:
            await self.revoke(record.serial_number, reason=reason, when=when)
        return records

    async def wait_idle(self) -> None:
        """Wait until the writer has written what was committed and finished any compaction.

        A server that stops waits for this: whoever loads the journal next must not read it while
        this ledger still appends to it or replaces it.
        """
        while (writer := self._writer) is not None and not writer.done():
            await asyncio.wait({writer})

    # --- journal ----------------------------------------------------------------------------------

    async def _commit(self, event: Event, supersession: Supersession | None = None) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(event, future, supersession))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queue(), name="est ledger writer")
        # A caller cancelled meanwhile cancels only its wait: the event is in the queue and is written
        # all the same (the writer answers only the futures still waited on).
        await future

    async def _write_queue(self) -> None:
        busy = False
        while self._queue:
            if busy:  # the last write carried several events: more are on their way, let them share
                await asyncio.sleep(_GROUP_DELAY)
            batch, self._queue = self._queue, []
            busy = len(batch) > 1
            events = self._with_supersessions(batch)
            try:
                await self._journal.append(events)
            except Exception as err:
                _LOGGER.exception("Could not write the certificate ledger")
                for queued in batch:
                    if not queued.future.done():
                        queued.future.set_exception(CAFailure(f"could not record the certificate: {err}"))
                continue
            changed = [record for event in events if (record := self._apply(event)) is not None]
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_result(None)
            for record in changed:
                self._tell_listener(record)
            self._events_since_compaction += len(events)
            await self._compact_if_due()

    def _with_supersessions(self, batch: list[_Queued]) -> list[Event]:
        """The batch's events, each issued one followed by the revocations its supersession asks for.

        Worked out against the records and the events before it in the batch, so that certificates
        recorded at the same moment for one appliance count each other.
        """
        events: list[Event] = []
        valid: dict[str, list[tuple[int, int]]] = {}  # appliance -> (serial, notAfter), oldest first
        revoked: set[int] = set()
        for queued in batch:
            event = queued.event
            events.append(event)
            if event["op"] == "revoked":
                serial = int(event["serial"], 16)
                revoked.add(serial)
                for kept in valid.values():
                    kept[:] = [c for c in kept if c[0] != serial]
            if event["op"] != "issued" or (supersession := queued.supersession) is None:
                continue
            appliance_id = event["appliance"]
            when = int(supersession.when.timestamp())
            if (certificates := valid.get(appliance_id)) is None:
                certificates = valid[appliance_id] = [
                    c for c in self._valid(appliance_id, when) if c[0] not in revoked
                ]
            superseded = [c for c in certificates if c[0] in supersession.also]
            certificates[:] = [c for c in certificates if c[1] > when and c not in superseded]
            while len(certificates) >= supersession.keep:
                superseded.append(certificates.pop(0))
            for serial, _ in superseded:
                revoked.add(serial)
                events.append(_revocation_event(serial, when, x509.ReasonFlags.superseded))
            certificates.append((int(event["serial"], 16), event["not_after"]))
        return events

    def _valid(self, appliance_id: str, now: int) -> list[tuple[int, int]]:
        """The appliance's unrevoked, unexpired certificates (serial, notAfter), oldest first.

        Revoked and expired stay so: the search starts after the leading ones found dead before.
        """
        serials = self._by_appliance.get(appliance_id, [])
        start = self._dead_before.get(appliance_id, 0)
        found: list[tuple[int, int]] = []
        for index in range(start, len(serials)):
            record = self._records[serials[index]]
            if record.revoked or record.not_after <= now:
                if not found:
                    start = index + 1
                continue
            found.append((record.serial_number, record.not_after))
        self._dead_before[appliance_id] = start
        return found

    def _tell_listener(self, record: CertificateRecord) -> None:
        # A listener's bug must not stop the writer: the events after it would never be answered.
        try:
            self._listener.certificate_recorded(record)
        except Exception:
            _LOGGER.exception("The certificate ledger's listener failed on serial %x", record.serial_number)

    async def _compact_if_due(self) -> None:
        if self._events_since_compaction < max(_COMPACT_MIN, len(self._records)):
            return
        try:
            await self._journal.compact(_Snapshot(self._crl_number, list(self._records.values())))
        except Exception:
            _LOGGER.exception("Could not compact the certificate ledger; will retry")
            return
        self._events_since_compaction = 0

    def _apply(self, event: Event) -> CertificateRecord | None:
        if event["op"] == "meta":
            self._crl_number = max(self._crl_number, event["crl_number"])
            return None
        serial = int(event["serial"], 16)
        if event["op"] == "issued":
            if (known := self._records.get(serial)) is not None:
                # Read twice after a crash between writing a compaction and dropping the older copy;
                # the compacted copy may carry a revocation the older one does not.
                _LOGGER.debug("Ledger lists serial %x twice; keeping the first", serial)
                if event.get("revoked_at") is not None and not known.revoked:
                    known.revoked_at = event["revoked_at"]
                    known.revocation_reason = event.get("reason")
                    self._revoked[serial] = known
                    return known
                return None
            record = CertificateRecord(
                serial_number=serial,
                appliance_id=sys.intern(event["appliance"]),
                subject=sys.intern(event["subject"]),
                key_fingerprint=event["key"],
                not_before=event["not_before"],
                not_after=event["not_after"],
                revoked_at=event.get("revoked_at"),
                revocation_reason=event.get("reason"),
            )
            if (renews := event.get("renews")) is not None:
                record.renews = int(renews, 16)
                if (renewed := self._records.get(record.renews)) is not None:
                    renewed.renewed_by = serial
            self._records[serial] = record
            self._by_appliance.setdefault(record.appliance_id, []).append(serial)
            if record.revoked:
                self._revoked[serial] = record
            return record
        record = self._records[serial]
        if record.revoked:  # replayed: already counted
            return record
        record.revoked_at = event["at"]
        record.revocation_reason = event["reason"]
        self._revoked[serial] = record
        self._crl_number += 1
        return record


class _Snapshot(Sequence[Event]):
    """The events of a compacted journal, each made when read: the journal reads them in its thread.

    Only the writer task changes records, and it waits for the compaction: they hold still meanwhile.
    """

    def __init__(self, crl_number: int, records: list[CertificateRecord]) -> None:
        self._meta: Event = {"op": "meta", "crl_number": crl_number}
        self._records = records

    def __len__(self) -> int:
        return len(self._records) + 1

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._meta if index == 0 else _snapshot_event(self._records[index - 1])

    def __iter__(self) -> Iterator[Event]:
        yield self._meta
        for record in self._records:
            yield _snapshot_event(record)


def _revocation_event(serial_number: int, at: int, reason: x509.ReasonFlags) -> Event:
    return {"op": "revoked", "serial": format(serial_number, "x"), "at": at, "reason": reason.value}


def _snapshot_event(record: CertificateRecord) -> Event:
    event: dict[str, Any] = {
        "op": "issued",
        "serial": format(record.serial_number, "x"),
        "appliance": record.appliance_id,
        "subject": record.subject,
        "key": record.key_fingerprint,
        "not_before": record.not_before,
        "not_after": record.not_after,
    }
    if record.renews is not None:
        event["renews"] = format(record.renews, "x")
    if record.revoked:
        event["revoked_at"] = record.revoked_at
        event["reason"] = record.revocation_reason
    return event
