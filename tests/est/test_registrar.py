"""Registrar races the HTTP tests cannot time: a revocation while a renewal is being recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.client import build_csr, renewal_csr
from custom_components.est_pairing.est.errors import CertificateRevoked
from custom_components.est_pairing.est.issuance import IssuancePolicy
from custom_components.est_pairing.est.ledger import Ledger
from custom_components.est_pairing.est.policy import EnrollmentPolicy
from custom_components.est_pairing.est.registrar import Issued, Peer, Registrar
from custom_components.est_pairing.est.storage import Event, JournalFile
from custom_components.est_pairing.est.wire import BasicCredentials


class GatedJournal(JournalFile):
    """A journal whose appends wait at a gate the test opens."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def append(self, events: Sequence[Event]) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().append(events)


async def test_a_renewal_recorded_during_revocation_is_revoked_too(tmp_path: Path, ca: HouseholdCA) -> None:
    journal = GatedJournal(tmp_path / "ledger.jsonl")
    ledger = Ledger(journal)
    policy = EnrollmentPolicy()
    policy.preregister("oven", "123456")
    registrar = Registrar(ca=ca, ledger=ledger, policy=policy, issuance=IssuancePolicy())
    key = ec.generate_private_key(ec.SECP256R1())
    first = await registrar.enroll(
        Peer("127.0.0.1", BasicCredentials("oven", "123456")), build_csr(key, "oven")
    )
    assert isinstance(first, Issued)

    journal.gate.clear()
    new_key = ec.generate_private_key(ec.SECP256R1())
    renewal = asyncio.create_task(
        registrar.reenroll(
            Peer("127.0.0.1", certificate_chain=(first.certificate,)), renewal_csr(new_key, first.certificate)
        )
    )
    await journal.waiting.wait()  # the renewal's certificate is signed and being recorded
    revocation = asyncio.create_task(registrar.revoke_appliance("oven"))
    await asyncio.sleep(0)
    journal.gate.set()

    with pytest.raises(CertificateRevoked, match="while this request was handled"):
        await renewal
    await revocation
    records = ledger.for_appliance("oven")
    assert len(records) == 2
    assert all(record.revoked for record in records)
    with pytest.raises(CertificateRevoked):
        policy.check_key(records[1].key_fingerprint)
