"""Owner actions racing appliance requests: nothing is issued after the owner revoked or removed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
import threading
from unittest.mock import patch

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from homeassistant.core import HomeAssistant
import pytest

from custom_components.est_pairing.est.errors import CertificateRevoked
from custom_components.est_pairing.est.registrar import _generate_key
from custom_components.est_pairing.est.storage import Event
from custom_components.est_pairing.runtime import EstRuntime
from custom_components.est_pairing.store import LedgerJournal
from est_tools.appliance.client import EstClient, build_csr, renewal_csr
from tests.est.polling import eventually

from . import OVEN, key, paired_oven


@contextmanager
def revocations_held(gate: asyncio.Event, held: asyncio.Event) -> Iterator[None]:
    """A slow disk: the ledger's revocation writes wait for ``gate`` (``held`` is set when one waits)."""
    original = LedgerJournal.append

    async def append(self: LedgerJournal, events: Sequence[Event]) -> None:
        if any(event["op"] == "revoked" for event in events):
            held.set()
            await gate.wait()
        await original(self, events)

    with patch.object(LedgerJournal, "append", append):
        yield


async def test_a_renewal_while_the_revocation_is_written_is_refused(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    certificate, oven_key = await paired_oven(hass, runtime, appliance_client)
    ledger = runtime.service.ledger
    gate, held = asyncio.Event(), asyncio.Event()
    new_key = key()
    with revocations_held(gate, held):
        revoking = asyncio.create_task(runtime.decisions.async_revoke("oven"))
        await asyncio.wait_for(held.wait(), 10)
        renewal = asyncio.create_task(
            appliance_client.reenroll(renewal_csr(new_key, certificate), certificate, oven_key)
        )
        # The renewal reaches the ledger (or is refused) while the revocation is still being written.
        await eventually(lambda: renewal.done() or len(ledger._queue) > 0, "the renewal waits for the disk")
        gate.set()
        await asyncio.wait_for(revoking, 10)
        with pytest.raises(CertificateRevoked):
            await asyncio.wait_for(renewal, 10)
    await hass.async_block_till_done()
    assert all(record.revoked for record in ledger.for_appliance("oven"))


async def test_a_server_generated_key_for_an_appliance_revoked_meanwhile_gets_no_certificate(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient
) -> None:
    """Serverkeygen approves, then makes a key in a thread: the owner revokes while it does."""
    runtime.decisions.preregister("oven", "482913", "Kitchen oven")
    await hass.async_block_till_done()
    generating, release = threading.Event(), threading.Event()

    def slow_key(*, want_rsa: bool) -> CertificateIssuerPrivateKeyTypes:
        generating.set()
        release.wait(10)
        return _generate_key(want_rsa=want_rsa)

    with patch("custom_components.est_pairing.est.registrar._generate_key", slow_key):
        request = asyncio.create_task(
            appliance_client.serverkeygen(
                build_csr(key(), "oven", details=OVEN), username="oven", password="482913", approval_timeout=0
            )
        )
        await eventually(lambda: generating.is_set() or request.done(), "the key is being made")
        await runtime.decisions.async_revoke("oven")
        release.set()
        with pytest.raises(CertificateRevoked):
            await asyncio.wait_for(request, 10)
    await hass.async_block_till_done()
    assert all(record.revoked for record in runtime.service.ledger.for_appliance("oven"))
