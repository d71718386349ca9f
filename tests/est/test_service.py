"""The running service: what it saves, what it does when it cannot, and that waiting for saves ends."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.errors import HouseholdCAMissing
from custom_components.est_pairing.est.service import EstService, ServiceConfig, ServiceListener
from custom_components.est_pairing.est.storage import Document, DocumentStore, JournalFile, JsonFileStore
from custom_components.est_pairing.est.tls import ListenerNames
from est_tools.standalone import cli
from est_tools.standalone.cli import PemDirectoryStore

from . import forge, rawhttp
from .conftest import presented_chain


class MemoryStore:
    """A document store whose save completes without ever suspending."""

    def __init__(self) -> None:
        self.saved: list[Document] = []

    async def load(self) -> Document | None:
        return None

    async def save(self, document: Document) -> None:
        self.saved.append(document)


class FullDisk:
    """A real file store on a disk that refuses writes while ``full`` (as a full disk does)."""

    def __init__(self, store: JsonFileStore | PemDirectoryStore) -> None:
        self.store = store
        self.full = True

    async def load(self) -> Document | None:
        return await self.store.load()

    async def save(self, document: Document) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        await self.store.save(document)


class SlowDisk:
    """A real file store whose saves wait while ``held`` is clear; ``waiting`` is set once one does."""

    def __init__(self, store: JsonFileStore) -> None:
        self.store = store
        self.held = asyncio.Event()
        self.held.set()
        self.waiting = asyncio.Event()

    async def load(self) -> Document | None:
        return await self.store.load()

    async def save(self, document: Document) -> None:
        if not self.held.is_set():
            self.waiting.set()
            await self.held.wait()
        await self.store.save(document)


class Saves(ServiceListener):
    """What the service told about saving the approvals."""

    def __init__(self) -> None:
        self.told: list[OSError | None] = []

    def approvals_saved(self, error: OSError | None) -> None:
        self.told.append(error)


def hub(
    tmp_path: Path,
    *,
    ca_store: DocumentStore | None = None,
    policy_store: DocumentStore | None = None,
    listener: ServiceListener | None = None,
) -> EstService:
    """A service over the files in ``tmp_path`` (or the stores given)."""
    names = ListenerNames.from_hosts(["hub.local", "127.0.0.1"])
    return EstService(
        ServiceConfig("Test", port=0, bind_host="127.0.0.1", names=names),
        ca_store=ca_store or PemDirectoryStore(tmp_path),
        policy_store=policy_store or JsonFileStore(tmp_path / "approvals.json"),
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
        listener=listener,
    )


async def hub_with_oven(tmp_path: Path, policy_store: DocumentStore) -> EstService:
    """A loaded service with ``oven`` pre-registered (PIN 482913), its approvals saved."""
    service = hub(tmp_path, policy_store=policy_store)
    await service.load()
    await service.policy.preregister("oven", "482913")
    await service.flush(check=True)
    return service


async def test_a_household_ca_that_cannot_be_saved_is_not_used(tmp_path: Path) -> None:
    """Certificates issued under a CA lost at the next start would be worthless: load() fails instead."""
    disk = FullDisk(PemDirectoryStore(tmp_path))
    with pytest.raises(OSError, match="No space left"):
        await hub(tmp_path, ca_store=disk).load()
    assert await disk.load() is None
    disk.full = False
    service = hub(tmp_path, ca_store=disk)
    assert await service.load()  # created now, and saved
    restarted = hub(tmp_path)
    assert not await restarted.load()  # the saved one
    assert restarted.ca.fingerprint == service.ca.fingerprint


async def test_approvals_that_cannot_be_saved_are_reported_once_and_saved_with_the_next_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullDisk(JsonFileStore(tmp_path / "approvals.json"))
    saves = Saves()
    service = hub(tmp_path, policy_store=disk, listener=saves)
    await service.load()
    told = saves.told
    await service.policy.preregister("oven", "482913")
    await service.policy.preregister("fridge", "551207")
    await service.flush()  # the failed saves do not make waiting for them fail
    error = service.policy_save_error
    assert isinstance(error, OSError)
    assert error.errno == errno.ENOSPC
    assert [type(e) for e in told] == [OSError, OSError]
    assert await disk.load() is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "Could not save the approvals ([Errno 28] No space left on device); every later change tries again"
    ]
    assert "482913" not in caplog.text
    disk.full = False
    await service.policy.preregister("dishwasher", "120934")
    await service.flush()
    assert service.policy_save_error is None
    assert told[-1] is None
    await service.stop()
    reloaded = hub(tmp_path)
    await reloaded.load()
    assert {r.appliance_id for r in reloaded.policy.registrations()} == {"oven", "fridge", "dishwasher"}


async def test_approvals_are_never_saved_over_those_on_disk_before_they_are_read(tmp_path: Path) -> None:
    first = hub(tmp_path)
    await first.load()
    await first.policy.preregister("oven", "482913")
    await first.stop()
    saves = Saves()
    service = hub(tmp_path, listener=saves)
    await service.policy.preregister("fridge", "551207")  # before load(): nothing saved
    await service.flush()
    assert saves.told == []
    await service.load()
    assert [r.appliance_id for r in service.policy.registrations()] == ["oven"]
    await service.stop()  # its SRP worker, started by the pre-registration


async def test_a_renewed_listener_certificate_that_cannot_be_saved_is_not_used(tmp_path: Path) -> None:
    """After a restart the old one would be back: the listener keeps the one that is saved."""
    disk = FullDisk(PemDirectoryStore(tmp_path))
    disk.full = False
    service = hub(tmp_path, ca_store=disk)
    await service.load()
    before = service.listener_identity
    disk.full = True
    with pytest.raises(OSError, match="No space left"):
        await service.update_names(ListenerNames.from_hosts(["hub.local", "192.168.1.20", "127.0.0.1"]))
    assert service.listener_identity is before
    disk.full = False
    assert await service.update_names(ListenerNames.from_hosts(["hub.local", "192.168.1.20", "127.0.0.1"]))
    restarted = hub(tmp_path)
    await restarted.load()
    assert restarted.listener_identity.certificate == service.listener_identity.certificate


async def test_the_listener_presents_its_certificate_then_the_household_ca(tmp_path: Path) -> None:
    """The chain is the one given, also after a re-issue (OpenSSL does not build one per handshake)."""
    service = hub(tmp_path)
    await service.load()
    await service.start()
    try:
        first = await presented_chain(service)
        assert first == [service.listener_identity.certificate, service.ca.certificate]
        wider = ListenerNames.from_hosts(["hub.local", "192.168.1.20", "127.0.0.1"])
        assert await service.update_names(wider)
        renewed = await presented_chain(service)
        assert renewed == [service.listener_identity.certificate, service.ca.certificate]
        assert renewed[0] != first[0]
    finally:
        await service.stop()


@pytest.mark.timeout(10)  # the regression was a busy loop: only a signal interrupts it
async def test_flush_returns_when_saves_already_finished(tmp_path: Path) -> None:
    """A save that finished before its done-callbacks ran used to make flush() spin forever."""
    policy_store = MemoryStore()
    service = EstService(
        ServiceConfig("Test", port=0),
        ca_store=JsonFileStore(tmp_path / "ca.json"),
        policy_store=policy_store,
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    await service.load()
    loop = asyncio.get_running_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # as Home Assistant runs many of its tasks
    try:
        await service.policy.preregister("oven", "123456")  # schedules a save that finishes at once
        await service.flush()
    finally:
        loop.set_task_factory(None)
        await service.stop()
    assert [r["appliance_id"] for r in policy_store.saved[-1]["registrations"]] == ["oven"]


@pytest.mark.timeout(10)
async def test_flush_returns_when_a_save_has_just_finished(tmp_path: Path) -> None:
    """The same, with the default task factory: the save's done-callbacks are queued, not yet run."""
    policy_store = MemoryStore()
    service = EstService(
        ServiceConfig("Test", port=0, bind_host="127.0.0.1"),
        ca_store=JsonFileStore(tmp_path / "ca.json"),
        policy_store=policy_store,
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    await service.load()
    await service.policy.preregister("oven", "123456")  # schedules a save
    await asyncio.sleep(0)  # the save runs and finishes
    await service.flush()
    assert [r["appliance_id"] for r in policy_store.saved[-1]["registrations"]] == ["oven"]
    await service.stop()


@pytest.mark.parametrize(
    ("bind_host", "crl_url"),
    [
        (None, "https://oven-hub.local:8443/crl"),  # the Home Assistant hub: every interface
        ("0.0.0.0", "https://oven-hub.local:8443/crl"),
        ("192.168.1.10", "https://192.168.1.10:8443/crl"),
        ("::1", "https://[::1]:8443/crl"),
    ],
)
def test_the_crl_is_named_where_the_listener_is_bound(
    tmp_path: Path, bind_host: str | None, crl_url: str
) -> None:
    names = ListenerNames.from_hosts(["oven-hub.local", "oven-hub", "192.168.1.10", "localhost", "127.0.0.1"])
    service = EstService(
        ServiceConfig("Test", port=8443, bind_host=bind_host, names=names),
        ca_store=MemoryStore(),
        policy_store=MemoryStore(),
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    assert service.crl_url == crl_url


async def test_a_revocation_whose_approvals_cannot_be_saved_is_refused_as_unsaved(tmp_path: Path) -> None:
    """The control command says so (the revocation took effect), and stopping tries once more."""
    disk = FullDisk(JsonFileStore(tmp_path / "approvals.json"))
    disk.full = False
    service = await hub_with_oven(tmp_path, disk)
    disk.full = True
    with pytest.raises(ValueError, match=r"revoked 0 certificate\(s\), but the approvals could not be saved"):
        await cli._control_command(service, {"command": "revoke", "appliance": "oven"})
    assert service.policy.registration("oven") is None  # revoked, in effect
    assert "oven" in str(await disk.load())  # but the saved approvals still hold its PIN
    with pytest.raises(OSError, match="No space left"):
        await service.flush(check=True)
    disk.full = False
    await service.stop()  # a last try
    assert "oven" not in str(await disk.load())


async def _enroll_oven(service: EstService, pin: str) -> rawhttp.RawResponse:
    """A first enrollment of ``oven`` with a new key and ``pin``, over TLS to the running listener."""
    headers = {"Content-Type": wire.PKCS10, "Authorization": wire.basic_authorization("oven", pin)}
    body = forge.body(forge.build(forge.new_key(), "oven"))
    request = rawhttp.http_request("POST", "/.well-known/est/simpleenroll", headers=headers, body=body)
    context = rawhttp.tls_context(service.ca.certificate_pem)
    answer = await rawhttp.exchange(service.port, request, tls=context)
    assert answer is not None
    return answer


async def test_a_pre_registration_admits_one_key_even_when_its_use_cannot_be_saved(tmp_path: Path) -> None:
    """Using a pre-registration is saved before its certificate is answered, else not answered.

    Answered first, a crash (or a full disk) would leave the pre-registration unused on disk, and
    after a restart it would admit a second key, unattended.
    """
    disk = FullDisk(JsonFileStore(tmp_path / "approvals.json"))
    disk.full = False
    service = await hub_with_oven(tmp_path, disk)
    await service.start()
    disk.full = True
    try:
        first = await _enroll_oven(service, "482913")
    finally:
        await service.stop()  # its last try to save fails too: what is on disk is what a crash leaves
    assert (first.status, first.reason_given) == (500, "the approvals could not be saved; nothing was issued")
    assert service.ledger.for_appliance("oven") == []
    restarted = hub(tmp_path)
    await restarted.load()
    await restarted.start()
    try:
        assert (await _enroll_oven(restarted, "482913")).status == 200  # the one key it admits
        assert (await _enroll_oven(restarted, "482913")).status == 202  # another waits for the owner
    finally:
        await restarted.stop()


async def test_an_appliance_revoked_while_its_approval_is_saved_gets_no_certificate(tmp_path: Path) -> None:
    disk = SlowDisk(JsonFileStore(tmp_path / "approvals.json"))
    service = await hub_with_oven(tmp_path, disk)
    await service.start()
    try:
        disk.held.clear()
        enrollment = asyncio.create_task(_enroll_oven(service, "482913"))
        await asyncio.wait_for(disk.waiting.wait(), 10)  # the pre-registration's use is being saved
        await service.registrar.revoke_appliance("oven")  # the owner removes the appliance meanwhile
        disk.held.set()
        answer = await enrollment
    finally:
        await service.stop()
    assert (answer.status, answer.reason_given) == (
        403,
        "the appliance was revoked while this request was handled",
    )
    assert service.ledger.for_appliance("oven") == []


async def test_a_re_issued_listener_certificate_that_cannot_be_saved_at_start_is_used(tmp_path: Path) -> None:
    """The CA is saved; any certificate it issues serves the listener, and the next start issues another."""
    first = hub(tmp_path)
    await first.load()
    disk = FullDisk(PemDirectoryStore(tmp_path))
    moved = EstService(
        ServiceConfig("Test", port=0, names=ListenerNames.from_hosts(["hub.local", "192.168.1.20"])),
        ca_store=disk,
        policy_store=JsonFileStore(tmp_path / "approvals.json"),
        ledger_journal=JournalFile(tmp_path / "ledger.jsonl"),
    )
    assert not await moved.load()  # starts
    assert moved.ca.fingerprint == first.ca.fingerprint
    assert "192.168.1.20" in moved.listener_identity.names().all()


@pytest.mark.parametrize("left", ["approvals", "ledger"])
async def test_a_household_ca_that_is_gone_is_not_replaced_while_what_it_made_is_there(
    tmp_path: Path, left: str
) -> None:
    """A new CA would quietly cut off every paired appliance: load() refuses and creates nothing."""
    first = hub(tmp_path)
    await first.load()
    if left == "approvals":
        await first.policy.preregister("oven", "482913")
        await first.flush(check=True)
    else:
        await first.ledger.record_issued(
            forge.issued_by(first.ca, forge.new_key().public_key(), not_before=first.now()), "oven"
        )
        (tmp_path / "approvals.json").unlink(missing_ok=True)
    await first.stop()
    for name in ("ca.pem", "ca.key", "listener.pem", "listener.key"):
        (tmp_path / name).unlink()  # set aside as damaged, or left out of a restore
    with pytest.raises(HouseholdCAMissing, match="restore it from a backup"):
        await hub(tmp_path).load()
    files = sorted(await asyncio.to_thread(os.listdir, tmp_path))
    assert [name for name in files if name.endswith((".pem", ".key"))] == []
    assert await PemDirectoryStore(tmp_path).load() is None


async def test_a_household_ca_is_made_where_nothing_was_made_before(tmp_path: Path) -> None:
    """An empty ledger and no approvals (a first start, or a start over): a new CA, saved."""
    (tmp_path / "ledger.jsonl").write_bytes(b"")
    assert await hub(tmp_path).load()
    assert (tmp_path / "ca.pem").exists()
