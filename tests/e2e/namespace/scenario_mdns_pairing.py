"""Pairing as it happens at home: Home Assistant announces its EST server over real mDNS, the simulated
appliance (a real process) finds it, the owner types the PIN, the appliance enrolls and renews by
itself, and once the owner revokes it, its next renewal is refused.

Not collected by the normal run (the file name does not start with ``test_``): it multicasts, so it
runs only in the private namespace tests/e2e/test_mdns_pairing.py creates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import os
from pathlib import Path
import stat
import sys
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.est_pairing.const import CONF_CA_NAME, CONF_PORT, DEFAULT_PORT, DOMAIN
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.cli import ExitCode

ROOT = Path(__file__).parents[3]
PIN = "482913"
STEP_TIMEOUT = 30.0  # generous: CI runs the suite twice on two cores


class ApplianceProcess:
    """``python -m est_tools.appliance`` as a user starts it, with its output read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def expect(self, text: str) -> str:
        """The next output line that contains ``text``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(STEP_TIMEOUT):
            while line := (await self.process.stdout.readline()).decode():
                self.lines.append(line.rstrip())
                if text in line:
                    return line.rstrip()
        raise AssertionError(f"the appliance ended without printing {text!r}:\n" + "\n".join(self.lines))

    async def exit_code(self) -> int:
        """Wait for the process to end; the rest of its output goes to ``lines``."""
        assert self.process.stdout is not None
        async with asyncio.timeout(STEP_TIMEOUT):
            rest = (await self.process.stdout.read()).decode()
            self.lines += rest.splitlines()
            return await self.process.wait()


@pytest.fixture
async def hub(hass: HomeAssistant) -> EstRuntime:
    """The integration as a user sets it up: the default port on every interface (here: loopback).

    It stays loaded: stopping Home Assistant at the end closes zeroconf, which waits for the goodbye
    packets (an unload would leave them to a task the harness reports as lingering).
    """
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=DOMAIN,
        title="Home Household CA",
        data={CONF_CA_NAME: "Home", CONF_PORT: DEFAULT_PORT},  # free: the namespace is ours alone
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = entry.runtime_data
    runtime.service.policy.retry_after = 1  # the appliance asks again every second, not every five
    return runtime


@pytest.fixture
async def oven(tmp_path: Path) -> AsyncIterator[ApplianceProcess]:
    """The simulated oven: no --server, so it must find the hub over mDNS; renews every two seconds."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_tools.appliance",
        *("--id", "oven", "--pin", PIN, "--name", "Kitchen oven", "--model", "OV-200"),
        *("--manufacturer", "Acme", "--serial", "SN-42", "--state-dir", str(tmp_path / "oven")),
        *("--renew-after", "2", "--discovery-timeout", str(STEP_TIMEOUT)),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    appliance = ApplianceProcess(process)
    yield appliance
    if process.returncode is None:
        process.kill()
        await process.wait()


async def until[T](check: Callable[[], T | None]) -> T:
    """Poll ``check`` (the event loop keeps serving the appliance meanwhile) until it returns a value."""
    async with asyncio.timeout(STEP_TIMEOUT):
        while (value := check()) is None:
            await asyncio.sleep(0.05)
    return value


def discovery_flow(hass: HomeAssistant) -> dict[str, Any] | None:
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    return dict(flows[0]) if flows else None


def stored(state_dir: Path) -> tuple[x509.Certificate, x509.Certificate]:
    """The appliance's certificate and the CA it pinned, as it saved them."""
    return (
        x509.load_pem_x509_certificate((state_dir / "certificate.pem").read_bytes()),
        x509.load_pem_x509_certificate((state_dir / "ca.pem").read_bytes()),
    )


async def test_appliance_finds_pairs_renews_and_is_revoked(
    hass: HomeAssistant, hub: EstRuntime, oven: ApplianceProcess, tmp_path: Path
) -> None:
    state_dir = tmp_path / "oven"

    # Discovery: the only way the appliance can know the port is the mDNS announcement.
    found = await oven.expect("found EST server")
    assert f"Home Household CA at https://127.0.0.1:{hub.service.port}" in found
    trusted = await oven.expect("trusting the server's CA on first use")
    assert format_fingerprint(hub.service.ca.fingerprint) in trusted
    await oven.expect("waiting for the owner to approve this appliance in Home Assistant")

    # The owner sees it under Discovered and types the PIN printed on the oven.
    flow = await until(lambda: discovery_flow(hass))
    assert flow["context"]["unique_id"] == "id:oven"
    assert flow["context"]["title_placeholders"] == {"name": "Kitchen oven"}
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"next_step_id": "pin"})
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {"pin": PIN})
    assert result["reason"] == "approved"

    # Its next retry gets a certificate from the household CA, for its id and mDNS name only.
    await oven.expect("enrolled: CN=oven")
    certificate, pinned = stored(state_dir)
    assert pinned == hub.service.ca.certificate
    certificate.verify_directly_issued_by(hub.service.ca.certificate)
    assert certificate.subject.rfc4514_string() == "CN=oven"
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["oven.local"]
    key = serialization.load_pem_private_key((state_dir / "key.pem").read_bytes(), password=None)
    assert key.public_key() == certificate.public_key()
    assert stat.S_IMODE((state_dir / "key.pem").stat().st_mode) == 0o600

    # It renews by itself, with a new key, and Home Assistant records the new certificate.
    await oven.expect("renewed: CN=oven")
    renewed, _ = stored(state_dir)
    renewed.verify_directly_issued_by(hub.service.ca.certificate)
    assert renewed.subject == certificate.subject
    assert renewed.serial_number != certificate.serial_number
    assert renewed.public_key() != certificate.public_key()
    assert len(hub.service.ledger.for_appliance("oven")) >= 2

    # The owner presses Revoke; the appliance's next renewal is refused and it says so.
    registry = er.async_get(hass)
    revoke = registry.async_get_entity_id("button", DOMAIN, f"{hub.entry.entry_id}_oven_revoke")
    assert revoke is not None
    await hass.services.async_call("button", "press", {ATTR_ENTITY_ID: revoke}, blocking=True)
    assert await oven.exit_code() == ExitCode.REVOKED
    assert oven.lines[-1].startswith("appliance: revoked: 403:"), oven.lines
    assert all(record.revoked for record in hub.service.ledger.for_appliance("oven"))
