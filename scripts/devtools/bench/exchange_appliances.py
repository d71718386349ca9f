"""The bench's appliances of the PIN exchange, in a process of their own: each asks until it pairs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
import contextlib
import multiprocessing
import os

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from est_tools.appliance.client import build_csr
from est_tools.appliance.exchange import PinExchangeClient
from est_tools.appliance.pake_client import ApplianceExchange, Paired

PIN = "482913"  # printed on each of the bench's appliances of the PIN exchange
ASK_AGAIN = 0.2  # seconds an appliance that is not paired yet waits before asking again

type Request = tuple[str, bytes]  # appliance id, DER certificate request


def new_request(appliance_id: str) -> Request:
    """A request of the appliance for a new key (EC P-256), made as the reference appliance makes it."""
    return appliance_id, build_csr(ec.generate_private_key(ec.SECP256R1()), appliance_id).public_bytes(
        Encoding.DER
    )


@contextlib.asynccontextmanager
async def appliance_process(cpus: set[int] | None = None) -> AsyncIterator[ProcessPoolExecutor]:
    """A process for the appliances (on ``cpus``), its imports done before the caller's probe starts."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as process:
        await asyncio.get_running_loop().run_in_executor(process, _settle, cpus)
        yield process


def _settle(cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


def pair(url: str, requests: Sequence[Request], attempts: int = 1) -> None:
    """In the appliance process: each request in turn, asked until its PIN exchange pairs it.

    At most ``attempts`` times, :data:`ASK_AGAIN` apart (an attempt is used once: a new one each
    time); RuntimeError if one is still not paired then.
    """
    asyncio.run(_pair(url, requests, attempts))


async def _pair(url: str, requests: Sequence[Request], attempts: int) -> None:
    async with PinExchangeClient(url) as client:
        for appliance_id, csr_der in requests:
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(ASK_AGAIN)
                outcome = await client.attempt(ApplianceExchange(appliance_id, PIN, csr_der))
                if isinstance(outcome, Paired):
                    break
            else:
                raise RuntimeError(
                    f"the hub did not pair the bench's {appliance_id} in {attempts} attempt(s) ({outcome})"
                )
