"""The event-loop stall one enrollment causes inside Home Assistant, and Home Assistant's CPU per enrollment.

The integration runs on Home Assistant's own core (the test harness's ``async_test_home_assistant``:
the real event loop, config entries, storage and entity platforms) with its real EST listener on
127.0.0.1; the loop-lag probe ticks on that loop while the load generator, in other processes,
enrolls (so this process's CPU time is Home Assistant's, its event loop and its executor threads).
Only what Home Assistant's test plugin mocks is mocked: its zeroconf instance (nothing may
multicast here) and the network integration's announce addresses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
import contextlib
from pathlib import Path
import tempfile
import time
from unittest.mock import AsyncMock, Mock, patch

from homeassistant import loader
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_test_home_assistant
from zeroconf import DNSCache, Zeroconf  # type: ignore[attr-defined]  # DNSCache: not in its __all__
from zeroconf.asyncio import AsyncZeroconf

from custom_components.est_pairing.const import CONF_CA_NAME, CONF_PORT, DOMAIN
from custom_components.est_pairing.runtime import EstRuntime

from .loadgen import Endpoint, LoadRun
from .loop_lag import LoopLagProbe
from .measure import Measurement, Target
from .workload import BENCH_APPLIANCE

ENROLL_PATH = "/.well-known/est/simpleenroll"

type Load = Callable[[Target, int, int], tuple[Measurement, LoadRun]]
type Runs = list[tuple[str, int, int]]  # label, concurrency, requests


@contextlib.contextmanager
def _no_multicast() -> Iterator[None]:
    """Home Assistant's zeroconf and announce addresses, mocked as its test plugin mocks them."""
    with (
        patch("homeassistant.components.zeroconf.HaZeroconf", autospec=True) as zeroconf,
        patch("homeassistant.components.zeroconf.AsyncServiceBrowser", autospec=True),
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


async def stalls_inside_home_assistant(
    runs: Runs, load: Load, password: str
) -> list[tuple[str, LoopLagProbe, Measurement, LoadRun, float]]:
    """Set the hub up in Home Assistant, then measure each run with the probe on Home Assistant's loop.

    Each result ends with the CPU seconds this process (Home Assistant) used during the run.
    """
    results = []
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
            runtime: EstRuntime = entry.runtime_data
            runtime.decisions.preregister(BENCH_APPLIANCE, password, "Bench appliance")
            runtime.service.policy.auto_approve = True  # every enrollment a new key (see phases.py)
            await hass.async_block_till_done()
            service = runtime.service
            target = Target(
                "inside Home Assistant",
                Endpoint("127.0.0.1", service.port, service.ca.certificate_pem.decode()),
                ENROLL_PATH,
                BENCH_APPLIANCE,
                password,
            )
            try:
                for label, concurrency, requests in runs:
                    cpu = time.process_time()
                    async with LoopLagProbe() as probe:
                        measurement, run = await hass.async_add_executor_job(
                            load, target, concurrency, requests
                        )
                    results.append((label, probe, measurement, run, time.process_time() - cpu))
            finally:
                await hass.config_entries.async_unload(entry.entry_id)
                await hass.async_block_till_done()
    return results
