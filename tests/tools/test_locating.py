"""The reference appliance finding its hub among impostors, over real TLS on 127.0.0.1.

mDNS itself multicasts, so the browse is replaced by what it would return (tests/e2e covers the real
one inside a network namespace); the servers behind those announcements are real listeners. An
impostor here is a real EST server with its own CA that announces the household CA's fingerprint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
import contextlib
from pathlib import Path

import pytest

from custom_components.est_pairing.est.discovery import qr_payload
from custom_components.est_pairing.est.errors import FingerprintMismatch
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from est_tools.appliance import agent
from est_tools.appliance.agent import Appliance, ApplianceConfig
from est_tools.appliance.browse import EstServer, server_from_qr_payload
from tests.est.conftest import RunningServer, make_service


@pytest.fixture
async def impostor(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Another EST server on the LAN: its own CA, and it takes any appliance's request."""
    data_dir = tmp_path / "impostor"
    data_dir.mkdir()
    service = make_service(data_dir)
    await service.load()
    service.policy.retry_after = 1
    await service.start()
    yield RunningServer(service, data_dir)
    await service.stop()


def announced(server: RunningServer, name: str, fingerprint: str) -> EstServer:
    return EstServer(name, server.url, None, fingerprint)


def browsing_finds(monkeypatch: pytest.MonkeyPatch, servers: Sequence[EstServer]) -> None:
    async def browse(*, within: float) -> list[EstServer]:
        return list(servers)

    monkeypatch.setattr(agent, "browse", browse)


def oven(
    state_dir: Path,
    *,
    server: EstServer | None = None,
    ca_fingerprint: str | None = None,
    renew_after: float | None = None,
) -> tuple[Appliance, list[str]]:
    """The appliance "oven" with PIN 123456, and the lines it reports."""
    lines: list[str] = []
    config = ApplianceConfig(
        appliance_id="oven",
        state_dir=state_dir,
        pin="123456",
        server=server,
        ca_fingerprint=ca_fingerprint,
        renew_after=renew_after,
        approval_timeout=5.0,  # nothing here waits for an owner: an appliance that does is failing
    )
    return Appliance(config, lines.append), lines


async def test_an_impostor_announcing_the_hubs_fingerprint_is_skipped(
    server: RunningServer, impostor: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    household = server.service.ca.fingerprint
    # The impostor copies the fingerprint and sorts first ("A ..."): the fingerprint proves nothing.
    browsing_finds(
        monkeypatch,
        [announced(impostor, "A Household CA", household), announced(server, "Home Household CA", household)],
    )
    first, lines = oven(tmp_path, ca_fingerprint=format_fingerprint(household).upper())  # typed from a screen
    await first.run(once=True)
    assert len(server.service.ledger) == 1
    assert impostor.service.policy.pending_requests() == []  # it never saw the PIN
    assert any(line.startswith("skipping A Household CA") for line in lines)

    # Paired now (the CA is pinned): renewing, the impostor is skipped again before any request.
    renewing, _ = oven(tmp_path, renew_after=0.0)
    await renewing.run(once=True)
    assert len(server.service.ledger) == 2
    assert len(impostor.service.ledger) == 0


async def test_a_server_given_by_qr_code_must_hold_the_scanned_ca(
    server: RunningServer, impostor: RunningServer, tmp_path: Path
) -> None:
    """The QR code's fingerprint comes from the owner's screen: it is required, not a hint."""
    scanned = server_from_qr_payload(
        qr_payload("127.0.0.1", impostor.service.port, server.service.ca.fingerprint)
    )
    with pytest.raises(FingerprintMismatch):
        await oven(tmp_path, server=scanned)[0].run(once=True)
    assert impostor.service.policy.pending_requests() == []
    assert not (tmp_path / "ca.pem").exists()

    genuine = server_from_qr_payload(
        qr_payload("127.0.0.1", server.service.port, server.service.ca.fingerprint)
    )
    await oven(tmp_path, server=genuine)[0].run(once=True)
    assert len(server.service.ledger) == 1


def test_a_typed_fingerprint_must_agree_with_the_scanned_one(tmp_path: Path) -> None:
    scanned = server_from_qr_payload(qr_payload("127.0.0.1", 8443, "ab" * 32))
    with pytest.raises(ValueError, match="differs"):
        oven(tmp_path, server=scanned, ca_fingerprint="cd" * 32)
    config = ApplianceConfig(
        appliance_id="oven", state_dir=tmp_path, server=scanned, ca_fingerprint=("AB:" * 32)[:-1]
    )
    assert config.expected_ca_fingerprint == "ab" * 32


async def test_renewing_when_another_device_answers_at_the_hubs_address_browses_again(
    server: RunningServer, impostor: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub moved and its old address now answers with another CA: look again, do not give up."""
    household = server.service.ca.fingerprint
    browsing_finds(monkeypatch, [announced(server, "Home Household CA", household)])
    first, _ = oven(tmp_path, ca_fingerprint=household)
    await first.run(once=True)

    answers = [[announced(impostor, "Home Household CA", household)], [announced(server, "Home", household)]]

    async def browse(*, within: float) -> list[EstServer]:
        return answers.pop(0) if answers else [announced(server, "Home", household)]

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(agent, "browse", browse)
    monkeypatch.setattr(agent, "_sleep", no_wait)
    renewing, lines = oven(tmp_path, renew_after=0.0)
    running = asyncio.create_task(renewing.run())  # the long-running appliance retries its renewals
    try:
        async with asyncio.timeout(30):
            while len(server.service.ledger) < 2:
                await asyncio.sleep(0.05)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert answers == []  # it browsed again after the impostor's answer
    assert any(line.startswith("renewal failed") and "trying again" in line for line in lines)
    assert len(impostor.service.ledger) == 0
