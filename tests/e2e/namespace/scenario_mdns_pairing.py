"""Pairing as it happens at home: Home Assistant announces its EST server over real mDNS, the simulated
appliance (a real process) finds it and asks through the PIN exchange, the owner types the PIN (a
mistyped one first, which the appliance's exchange cannot prove), the appliance's next exchange
proves it and enrolls, it renews by itself, and once the owner revokes it, its next renewal is
refused.

Not collected by the normal run (the file name does not start with ``test_``): it multicasts, so it
runs only in the private namespace tests/e2e/test_mdns_pairing.py creates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
import stat
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from homeassistant.config_entries import ConfigFlowResult
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.est_pairing.const import CONF_CA_NAME, CONF_PORT, DEFAULT_PORT, DOMAIN
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.cli import ExitCode
from tests.appliance_process import ApplianceProcess

ROOT = Path(__file__).parents[3]
PIN = "482913"
STEP_TIMEOUT = 30.0  # generous: CI runs the suite twice on two cores


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
    appliance = await ApplianceProcess.start(
        *("--id", "oven", "--pin", PIN, "--name", "Kitchen oven", "--model", "OV-200"),
        *("--manufacturer", "Acme", "--serial", "SN-42", "--state-dir", str(tmp_path / "oven")),
        *("--renew-after", "2", "--discovery-timeout", str(STEP_TIMEOUT)),
        step_timeout=STEP_TIMEOUT,
    )
    yield appliance
    await appliance.kill()


async def until[T](check: Callable[[], T | None]) -> T:
    """Poll ``check`` (the event loop keeps serving the appliance meanwhile) until it returns a value."""
    async with asyncio.timeout(STEP_TIMEOUT):
        while (value := check()) is None:
            await asyncio.sleep(0.05)
    return value


def discovery_flow(hass: HomeAssistant) -> dict[str, Any] | None:
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    return dict(flows[0]) if flows else None


async def after_the_wait(hass: HomeAssistant, flow_id: str) -> ConfigFlowResult:
    """What the owner's dialog shows once the appliance's exchange ended (the frontend asks again)."""
    await until(lambda: hass.config_entries.flow.async_get(flow_id)["step_id"] == "exchange_done" or None)
    return await hass.config_entries.flow.async_configure(flow_id)


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

    # Discovery: the only way the appliance can know the port is the mDNS announcement, which
    # offers the PIN exchange: the appliance trusts no CA on first use and never sends its PIN.
    found = await oven.expect("found EST server")
    assert f"Home Household CA at https://127.0.0.1:{hub.service.port}" in found
    await oven.expect("enrolling as oven through the PIN exchange")
    await oven.expect("waiting for the owner to type this appliance's PIN in Home Assistant")

    # The owner sees it under Discovered and types the PIN printed on the oven, mistyped at first:
    # the dialog waits for the oven's next exchange, which cannot prove it, and asks again.
    flow = await until(lambda: discovery_flow(hass))
    flow_id = flow["flow_id"]
    assert flow["context"]["unique_id"] == "id:oven"
    assert flow["context"]["title_placeholders"] == {"name": "Kitchen oven"}
    menu = await hass.config_entries.flow.async_configure(flow_id)
    assert (menu["step_id"], menu["menu_options"]) == ("confirm_exchange", ["pin", "reject"])
    await hass.config_entries.flow.async_configure(flow_id, {"next_step_id": "pin"})
    waiting = await hass.config_entries.flow.async_configure(flow_id, {"pin": "482931"})
    assert (waiting["type"], waiting["step_id"]) == (FlowResultType.SHOW_PROGRESS, "exchange")
    await oven.expect("the PIN exchange failed")
    result = await after_the_wait(hass, flow_id)
    assert (result["step_id"], result["errors"]) == ("exchange_pin", {"pin": "exchange_failed"})
    waiting = await hass.config_entries.flow.async_configure(flow_id, {"pin": PIN})
    assert waiting["type"] is FlowResultType.SHOW_PROGRESS
    assert (await after_the_wait(hass, flow_id))["reason"] == "paired"

    # Its next exchange proves the same PIN: the CA comes with the certificate, authenticated by the
    # exchange; the certificate is for its id and mDNS name only.
    authenticated = await oven.expect("the PIN exchange authenticated the hub's CA")
    assert format_fingerprint(hub.service.ca.fingerprint) in authenticated
    await oven.expect("enrolled: CN=oven")
    assert not [line for line in oven.lines if "trusting" in line]
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
