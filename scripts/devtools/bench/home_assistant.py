"""The event-loop stall one enrollment (or PIN exchange) causes inside Home Assistant, and its CPU.

The integration runs on Home Assistant's own core (the test harness's ``async_test_home_assistant``:
the real event loop, config entries, storage and entity platforms) with its real EST listener on
127.0.0.1; the loop-lag probe ticks on that loop while the load generator, in other processes,
enrolls (so this process's CPU time is Home Assistant's, its event loop and its executor threads),
or while appliances in another process pair through the PIN exchange, the owner typing each one's
PIN in its dialog (:func:`owner_paired_exchanges`). Only what Home Assistant's test plugin mocks
is mocked: its zeroconf instance (nothing may multicast here) and the network integration's
announce addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
import contextlib
import importlib.util
from pathlib import Path
import tempfile
import time
from typing import Any
from unittest.mock import AsyncMock, Mock, patch

from homeassistant import loader
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.data_entry_flow import EVENT_DATA_ENTRY_FLOW_PROGRESSED
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_test_home_assistant
from zeroconf import DNSCache, Zeroconf  # type: ignore[attr-defined]  # DNSCache: not in its __all__
from zeroconf.asyncio import AsyncZeroconf

from custom_components.est_pairing.const import CONF_CA_NAME, CONF_PORT, DOMAIN
from custom_components.est_pairing.runtime import EstRuntime

from .exchange_appliances import PIN, appliance_process, new_request, pair
from .loadgen import Endpoint, LoadRun
from .loop_lag import LoopLagProbe
from .measure import Measurement, Target
from .workload import BENCH_APPLIANCE

ENROLL_PATH = "/.well-known/est/simpleenroll"
_ATTEMPTS = 300  # an appliance of the PIN exchange asks at most this often: a minute
_WATCH = 0.01  # seconds between the owner's looks at Discovered

type Load = Callable[[Target, int, int], tuple[Measurement, LoadRun]]
type Runs = list[tuple[str, int, int]]  # label, concurrency, requests


# Where Home Assistant's zeroconf integration makes its service browser (newer releases: a module of its own).
_BROWSER = (
    "homeassistant.components.zeroconf.discovery.AsyncServiceBrowser"
    if importlib.util.find_spec("homeassistant.components.zeroconf.discovery") is not None
    else "homeassistant.components.zeroconf.AsyncServiceBrowser"
)


@contextlib.contextmanager
def _no_multicast() -> Iterator[None]:
    """Home Assistant's zeroconf and announce addresses, mocked as its test plugin mocks them."""
    with (
        patch("homeassistant.components.zeroconf.HaZeroconf", autospec=True) as zeroconf,
        patch(_BROWSER, autospec=True),
        patch("homeassistant.components.zeroconf.HaAsyncZeroconf", spec=AsyncZeroconf) as async_zeroconf,
        patch("homeassistant.components.network.async_get_announce_addresses", return_value=["127.0.0.1"]),
        patch("custom_components.est_pairing.runtime.BIND_HOST", "127.0.0.1"),
    ):
        zeroconf.return_value.cache = DNSCache()  # Cython-typed: a MagicMock will not do
        instance = async_zeroconf.return_value
        for name in (
            "async_register_service",
            "async_unregister_service",
            "async_update_service",
            "async_close",
            "ha_async_close",
        ):
            setattr(instance, name, AsyncMock())
        # Unregistering returns the goodbye broadcast to await, as python-zeroconf's does.
        instance.async_unregister_service.side_effect = lambda _info: asyncio.sleep(0)
        instance.zeroconf = Mock(spec=Zeroconf)
        instance.zeroconf.async_wait_for_start = AsyncMock()
        instance.zeroconf.cache = DNSCache()
        instance.zeroconf.done = False
        yield


@contextlib.asynccontextmanager
async def hub_in_home_assistant() -> AsyncIterator[EstRuntime]:
    """The integration set up on Home Assistant's core (its listener on 127.0.0.1), unloaded after."""
    with tempfile.TemporaryDirectory(prefix="est-bench-ha-") as config_dir, _no_multicast():
        (Path(config_dir) / ".storage").mkdir()
        async with async_test_home_assistant(config_dir=config_dir) as hass:
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS, None)  # load custom_components/
            entry = MockConfigEntry(
                domain=DOMAIN, unique_id=DOMAIN, data={CONF_CA_NAME: "Bench", CONF_PORT: 0}
            )
            entry.add_to_hass(hass)
            if not await hass.config_entries.async_setup(entry.entry_id):
                raise RuntimeError("the EST Appliance Pairing hub did not set up")
            await hass.async_block_till_done()
            try:
                yield entry.runtime_data
            finally:
                await hass.config_entries.async_unload(entry.entry_id)
                await hass.async_block_till_done()
                await hass.async_stop(force=True)  # as the harness's fixture does: its executors end


type Windows = list[tuple[float, float]]  # loop.time() from, to


async def stalls_inside_home_assistant(
    runs: Runs, load: Load, password: str, exchanges: int = 0, appliance_cpus: set[int] | None = None
) -> tuple[list[tuple[str, LoopLagProbe, Measurement, LoadRun, float]], tuple[LoopLagProbe, Windows] | None]:
    """Set the hub up in Home Assistant, then measure each run with the probe on Home Assistant's loop.

    Each run's result ends with the CPU seconds this process (Home Assistant) used during it. Then,
    if asked, ``exchanges`` pairings through the PIN exchange (:func:`owner_paired_exchanges`).
    """
    results = []
    paired = None
    async with hub_in_home_assistant() as runtime:
        await runtime.decisions.async_preregister(BENCH_APPLIANCE, password, "Bench appliance")
        runtime.service.policy.auto_approve = True  # every enrollment a new key (see phases.py)
        await runtime.hass.async_block_till_done()
        service = runtime.service
        target = Target(
            "inside Home Assistant",
            Endpoint("127.0.0.1", service.port, service.ca.certificate_pem.decode()),
            ENROLL_PATH,
            BENCH_APPLIANCE,
            password,
        )
        for label, concurrency, requests in runs:
            cpu = time.process_time()
            async with LoopLagProbe() as probe:
                measurement, run = await runtime.hass.async_add_executor_job(
                    load, target, concurrency, requests
                )
            results.append((label, probe, measurement, run, time.process_time() - cpu))
        if exchanges:
            paired = await owner_paired_exchanges(runtime, exchanges, appliance_cpus)
    return results, paired


async def owner_paired_exchanges(
    runtime: EstRuntime, count: int, cpus: set[int] | None
) -> tuple[LoopLagProbe, Windows]:
    """``count`` appliances pair through the PIN exchange, one after another, the owner typing each PIN.

    The appliances run in another process (on ``cpus``): each asks, waits under Discovered, and asks
    again until its exchange proves the PIN the owner typed in the dialog (the owner here drives
    the real config flow, as the frontend does). Returns the probe on Home Assistant's loop and each
    pairing's window (``loop.time()``), from the end of the one before to its dialog's "paired".
    """
    hass = runtime.hass
    loop = asyncio.get_running_loop()
    url = f"https://127.0.0.1:{runtime.service.port}"
    windows: Windows = []
    requests = [new_request(f"bench-oven-{index}") for index in range(count)]
    async with appliance_process(cpus) as appliances, LoopLagProbe() as probe:
        asking = loop.run_in_executor(appliances, pair, url, requests, _ATTEMPTS)
        for _ in range(count):
            started = loop.time()
            await _owner_types_the_pin(hass)
            windows.append((started, loop.time()))
        await asking
    return probe, windows


async def _owner_types_the_pin(hass: HomeAssistant) -> None:
    """The next appliance under Discovered: type its PIN, wait for its dialog to say it is paired."""
    flow_id = None
    while flow_id is None:
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        flow_id = next((f["flow_id"] for f in flows if f["step_id"] == "confirm_exchange"), None)
        await asyncio.sleep(_WATCH)
    manager = hass.config_entries.flow
    progressed = asyncio.Event()  # Home Assistant tells the frontend so when the dialog's wait ends

    @callback
    def told(event: Event[Mapping[str, Any]]) -> None:
        if event.data["flow_id"] == flow_id:
            progressed.set()

    unsubscribe = hass.bus.async_listen(EVENT_DATA_ENTRY_FLOW_PROGRESSED, told)
    try:
        await manager.async_configure(flow_id, {"next_step_id": "pin"})
        await manager.async_configure(flow_id, {"pin": PIN})
        await progressed.wait()
    finally:
        unsubscribe()
    if (done := await manager.async_configure(flow_id)).get("reason") != "paired":
        raise RuntimeError(f"the bench's appliance did not pair through the PIN exchange ({done})")
