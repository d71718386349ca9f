"""Library tests: no Home Assistant instance, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
import time
from typing import Any

from cryptography import x509
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.service import EstService, ServiceConfig, ServiceListener
from custom_components.est_pairing.est.storage import JournalFile, JsonFileStore
from custom_components.est_pairing.est.tls import ListenerNames
from est_tools.appliance.client import EstClient, client_ssl_context

_DECISIONS: set[asyncio.Task[Any]] = set()

SESSION_START = datetime.now(UTC)  # imported before the test modules of this directory


def soon(decision: Coroutine[Any, Any, Any]) -> None:
    """Run an owner's decision from a synchronous callback (a client's ``on_pending``), as a task."""
    task = asyncio.get_running_loop().create_task(decision)
    _DECISIONS.add(task)
    task.add_done_callback(_DECISIONS.discard)


@pytest.fixture(autouse=True)
def allow_loopback_sockets(socket_enabled: None) -> None:
    """Real TLS listeners on 127.0.0.1 (the Home Assistant plugin blocks sockets by default)."""


@pytest.fixture(scope="session")
def ca() -> HouseholdCA:
    """One household CA for the whole session (key generation is the slow part).

    Valid from before any test module's import: several fix their clock then, and the session's CA
    may be made many minutes later in a long run.
    """
    return HouseholdCA.create("Test", now=SESSION_START)


@pytest.fixture(scope="session")
def certificate(ca: HouseholdCA) -> x509.Certificate:
    """Any certificate: the CA's own."""
    return ca.certificate


@dataclass
class RunningServer:
    """A standalone EST service on 127.0.0.1 with its files in a temporary directory."""

    service: EstService
    data_dir: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.service.port}"

    def client(self) -> EstClient:
        return EstClient(self.url, self.service.ca.certificate)

    async def presented_certificate(self) -> x509.Certificate:
        """The listener's certificate, as a TLS handshake that verifies it presents it."""
        return (await presented_chain(self.service))[0]


async def presented_chain(service: EstService) -> list[x509.Certificate]:
    """The certificates the listener sends, as sent (its own first), in a handshake that verifies them."""
    context = client_ssl_context(service.ca.certificate)
    _, writer = await asyncio.open_connection("127.0.0.1", service.port, ssl=context)
    chain = writer.get_extra_info("ssl_object").get_unverified_chain()
    writer.close()
    await writer.wait_closed()
    return [x509.load_der_x509_certificate(der) for der in chain]


def make_service(
    data_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    listener: ServiceListener | None = None,
    **config: Any,
) -> EstService:
    """An EstService over files in ``data_dir`` (the standalone command's stores)."""
    return EstService(
        ServiceConfig(
            "Test",
            port=0,
            bind_host="127.0.0.1",
            names=ListenerNames.from_hosts(["localhost", "127.0.0.1"]),
            **config,
        ),
        ca_store=JsonFileStore(data_dir / "ca.json"),
        policy_store=JsonFileStore(data_dir / "policy.json"),
        ledger_journal=JournalFile(data_dir / "ledger.jsonl"),
        clock=clock,
        listener=listener,
    )


@asynccontextmanager
async def oven_server(
    data_dir: Path, listener: ServiceListener | None = None, **config: Any
) -> AsyncIterator[RunningServer]:
    """A running server with appliance ``oven`` pre-registered with PIN 123456."""
    service = make_service(data_dir, listener=listener, **config)
    await service.load()
    await service.policy.preregister("oven", "123456")
    service.policy.retry_after = 1
    await service.start()
    try:
        yield RunningServer(service, data_dir)
    finally:
        await service.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A running server with appliance ``oven`` pre-registered with PIN 123456."""
    async with oven_server(tmp_path) as running:
        yield running
