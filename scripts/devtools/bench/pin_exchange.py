"""What the PIN exchange (SRP-6a) costs the hub and the appliance, on each of pysrp's backends.

For each backend that loads here (OpenSSL through ctypes where ``libssl.so`` is found, and pure
Python, which is what a machine without it gets), in CPU time, medians over the rounds:

- the hub's work per exchange: parsing the three messages (the request's signature check included),
  the challenge, the proof check and the request's MAC; not the certificate it then issues (process
  CPU time: its exponentiations run in a worker thread);
- the appliance's work per exchange: A, M1, checking M2 and the answer's MAC, the certificate checks;
- the owner's side: making the verifier from a typed PIN, and checking a PIN sent in HTTP Basic;
- how long the hub's steps, run in the SRP worker process, held up an event
  loop (a thread would not do: the pure-Python backend holds the GIL through each exponentiation);
- the same for whole exchanges over the real listener, an appliance in another process asking: in the
  standalone server's service, and inside Home Assistant (the integration on its core), with the
  worker on each backend (Home Assistant OS most likely has no ``libssl.so`` for pysrp to load).

``scripts/bench --pake`` prints them (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import importlib
from pathlib import Path
import statistics
import tempfile
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from custom_components.est_pairing.est import pake, srp6a, verifiers
from custom_components.est_pairing.est.ca import HouseholdCA, IssuedName
from custom_components.est_pairing.est.service import EstService, ServiceConfig
from custom_components.est_pairing.est.srp_worker import SrpWorker
from custom_components.est_pairing.est.tls import ListenerNames
from est_tools.appliance.pake_client import ApplianceExchange
from est_tools.standalone.cli import open_service

from .exchange_appliances import PIN, Request, appliance_process, new_request, pair
from .loop_lag import LoopLagProbe

_ID = "oven"
BACKENDS = (("OpenSSL via ctypes", "srp._ctsrp"), ("pure Python", "srp._pysrp"))
STALL_TARGET = 0.005  # seconds: the most an exchange may hold the hub's event loop


@dataclass(frozen=True, slots=True)
class Costs:
    """One backend's figures, in seconds."""

    backend: str
    hub: float  # CPU per exchange: the process's (its exponentiations run in a worker thread)
    appliance: float
    make_verifier: float
    basic_check: float
    loop_stall: float  # the longest an event loop waited while the hub's steps ran in the SRP worker
    listener_stalls: dict[str, float] = field(default_factory=dict)  # whole exchanges, by where the hub ran


def backends() -> list[tuple[str, str, srp6a.SrpBackend]]:
    """The backends that load on this machine: label, module name, module."""
    found: list[tuple[str, str, srp6a.SrpBackend]] = []
    for label, module in BACKENDS:
        try:
            found.append((label, module, importlib.import_module(module)))
        except (ImportError, OSError):  # the OpenSSL backend without libssl.so
            continue
    return found


class Fixture:
    """A CA, a request and a certificate for it: what an exchange needs besides the arithmetic."""

    def __init__(self) -> None:
        self.ca = HouseholdCA.create("Bench")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _ID)])
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        self.csr_der = csr.public_bytes(Encoding.DER)
        now = datetime.now(UTC)
        self.ca_der = self.ca.certificate.public_bytes(Encoding.DER)
        self.certificate_der = self.ca.issue_appliance_certificate(
            public_key=csr.public_key(),
            name=IssuedName(_ID),
            server_auth=False,
            serial_number=x509.random_serial_number(),
            not_before=now,
            not_after=now + timedelta(days=1),
            crl_url=None,
        ).public_bytes(Encoding.DER)


async def exchange(
    backend: srp6a.SrpBackend, verifier: verifiers.PinVerifier, fixture: Fixture
) -> tuple[float, float]:
    """One whole exchange: (the hub's CPU seconds, the appliance's).

    The appliance's steps in this thread (thread CPU time); the hub's with their exponentiations in
    a worker thread, so in process CPU time (nothing else runs meanwhile).
    """
    hub_exchanges = pake.HubExchanges(work=verifiers.ThreadedSrp(backend))
    appliance = ApplianceExchange(_ID, PIN, fixture.csr_der, backend=backend)
    spent = {"hub": 0.0, "appliance": 0.0}

    def timed[T](work: Callable[[], T]) -> T:
        started = time.thread_time()
        result = work()
        spent["appliance"] += time.thread_time() - started
        return result

    async def hub_step(message: dict[str, str]) -> dict[str, Any]:
        started = time.process_time()
        answer = await _hub_answer(hub_exchanges, pake.parse_request(pake.encode(message)), verifier, fixture)
        spent["hub"] += time.process_time() - started
        return answer

    start = timed(appliance.start)
    challenge = await hub_step(start)
    prove = timed(lambda: appliance.answer(pake.encode(challenge)))
    hub_proof = await hub_step(prove)
    enroll = timed(lambda: appliance.confirm(pake.encode(hub_proof)))
    final = await hub_step(enroll)
    timed(lambda: appliance.conclude(pake.encode(final)))
    return spent["hub"], spent["appliance"]


async def _hub_answer(
    hub_exchanges: pake.HubExchanges,
    message: pake.PakeRequest,
    verifier: verifiers.PinVerifier,
    fixture: Fixture,
) -> dict[str, Any]:
    """The hub's answer to one parsed message."""
    if isinstance(message, pake.StartRequest):
        return (await hub_exchanges.start(message, verifier, "192.0.2.7")).to_dict()
    session = hub_exchanges.take(message.session)
    if isinstance(message, pake.ProveRequest):
        return (await hub_exchanges.prove(session, message)).to_dict()
    success = hub_exchanges.enroll(session, message)
    return success.final_answer(fixture.ca_der, fixture.certificate_der).to_dict()


def cpu(work: Callable[[], object]) -> float:
    """Thread CPU seconds of one run of ``work``."""
    started = time.thread_time()
    work()
    return time.thread_time() - started


async def loop_stall(
    module: str, backend: srp6a.SrpBackend, verifier: verifiers.PinVerifier, fixture: Fixture
) -> float:
    """The longest an event loop waited while the hub's steps ran in the SRP worker (CPU waits left out).

    The worker starts cold, as it does for the first exchange after a quiet minute.
    """
    appliance = ApplianceExchange(_ID, PIN, fixture.csr_der, backend=backend)
    start = _parse(appliance.start(), pake.StartRequest)
    worker = SrpWorker(backend=module)
    hub_exchanges = pake.HubExchanges(work=worker)
    try:
        async with LoopLagProbe() as probe:
            challenge = await hub_exchanges.start(start, verifier, None)
            await asyncio.sleep(0.01)  # the appliance's turn happens elsewhere
        during_start = probe.longest(exclude_cpu_wait=True)
        prove = _parse(appliance.answer(pake.encode(challenge.to_dict())), pake.ProveRequest)
        async with LoopLagProbe() as probe:
            await hub_exchanges.prove(hub_exchanges.take(prove.session), prove)
            await worker.pin_matches(verifier, PIN)
            await worker.make_verifier(_ID, PIN)
            await asyncio.sleep(0.01)
        return max(during_start, probe.longest(exclude_cpu_wait=True))
    finally:
        await worker.close()


def _parse[T](message: dict[str, str], kind: type[T]) -> T:
    parsed = pake.parse_request(pake.encode(message))
    if not isinstance(parsed, kind):
        raise TypeError(f"expected a {kind.__name__}")
    return parsed


def measure(label: str, module: str, backend: srp6a.SrpBackend, rounds: int, fixture: Fixture) -> Costs:
    """Medians over ``rounds`` for one backend."""
    verifier = verifiers.PinVerifier.create(_ID, PIN, backend)
    runs = [asyncio.run(exchange(backend, verifier, fixture)) for _ in range(rounds)]
    return Costs(
        backend=label,
        hub=statistics.median(run[0] for run in runs),
        appliance=statistics.median(run[1] for run in runs),
        make_verifier=statistics.median(
            cpu(lambda: verifiers.PinVerifier.create(_ID, PIN, backend)) for _ in range(rounds)
        ),
        basic_check=statistics.median(cpu(lambda: verifier.matches(PIN, backend)) for _ in range(rounds)),
        loop_stall=max(
            asyncio.run(loop_stall(module, backend, verifier, fixture)) for _ in range(min(rounds, 5))
        ),
    )


# --- whole exchanges over the listener -----------------------------------------------------------------


async def listener_stall(service: EstService, module: str, request: Request, count: int) -> float:
    """The longest the service's loop stalled (CPU waits left out) during ``count`` exchanges.

    An appliance in another process asks over the listener, with ``request`` each time; the hub's
    steps run in its SRP worker on ``module``, which starts cold, as the first exchange after a
    quiet minute finds it.
    """
    await service.srp.close()
    service.srp.backend = module
    loop = asyncio.get_running_loop()
    url = f"https://127.0.0.1:{service.port}"
    async with appliance_process() as appliance, LoopLagProbe() as probe:
        await loop.run_in_executor(appliance, pair, url, [request] * count)
    return probe.longest(exclude_cpu_wait=True)


async def standalone_stalls(modules: list[str], request: Request, count: int) -> list[float]:
    """:func:`listener_stall` for each worker backend, in the standalone server's service."""
    with tempfile.TemporaryDirectory(prefix="est-bench-pake-") as data_dir:
        names = ListenerNames.from_hosts(["127.0.0.1"])
        service = open_service(
            Path(data_dir), ServiceConfig("Bench", port=0, bind_host="127.0.0.1", names=names)
        )
        await service.load()
        await service.policy.preregister(_ID, PIN)
        await service.start()
        try:
            return [await listener_stall(service, module, request, count) for module in modules]
        finally:
            await service.stop()


async def home_assistant_stalls(modules: list[str], request: Request, count: int) -> list[float]:
    """:func:`listener_stall` for each worker backend, the integration on Home Assistant's core."""
    from .home_assistant import hub_in_home_assistant  # the Home Assistant harness, only when asked

    async with hub_in_home_assistant() as runtime:
        await runtime.decisions.async_preregister(_ID, PIN, "Bench oven")
        return [await listener_stall(runtime.service, module, request, count) for module in modules]


def main(rounds: int = 20, exchanges: int = 20, *, home_assistant: bool = True) -> list[Costs]:
    """Print the figures for each backend that loads here; return them."""
    fixture = Fixture()
    found = backends()
    results = [measure(label, module, backend, rounds, fixture) for label, module, backend in found]
    print(
        f"PIN exchange ({srp6a.METHOD}): the hub's process CPU and the appliance's thread CPU, median of "
        f"{rounds} rounds; the longest event-loop stall while the hub's steps ran in the SRP worker process"
    )
    print(
        f"  {'backend':20s} {'hub/exchange':>13s} {'appliance':>10s} {'PIN->verifier':>14s} "
        f"{'Basic PIN check':>16s} {'loop stall':>11s}"
    )
    for costs in results:
        print(
            f"  {costs.backend:20s} {_ms(costs.hub):>13s} {_ms(costs.appliance):>10s} "
            f"{_ms(costs.make_verifier):>14s} {_ms(costs.basic_check):>16s} {_ms(costs.loop_stall):>11s}"
        )
    modules = [module for _, module, _ in found]
    request = new_request(_ID)  # the same each time: the hub answers again with its certificate
    places = {"standalone server": asyncio.run(standalone_stalls(modules, request, exchanges))}
    if home_assistant:
        places["inside Home Assistant"] = asyncio.run(home_assistant_stalls(modules, request, exchanges))
    print(
        f"{exchanges} whole PIN exchanges over the listener, from an appliance in another process: the "
        f"longest event-loop stall, CPU waits left out (target {_ms(STALL_TARGET)})"
    )
    print(f"  {'SRP worker backend':20s}" + "".join(f" {place:>22s}" for place in places))
    for index, (label, _, _) in enumerate(found):
        stalls = [stalls[index] for stalls in places.values()]
        over = " (over the target)" if max(stalls) > STALL_TARGET else ""
        print(f"  {label:20s}" + "".join(f" {_ms(stall):>22s}" for stall in stalls) + over)
        results[index] = dataclasses.replace(
            results[index], listener_stalls=dict(zip(places, stalls, strict=True))
        )
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"
