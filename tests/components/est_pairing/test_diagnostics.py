"""Diagnostics: a snapshot, and no secrets."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
from syrupy.matchers import path_type

from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, build_csr

VARIES = path_type(
    {
        "ca.fingerprint": (str,),
        "ca.not_valid_after": (str,),
        "listener.port": (int,),
        "listener.not_valid_after": (str,),
        r"pending\.\d+\.key_fingerprint": (str,),
        r"certificates\.\d+\.serial": (str,),
        r"certificates\.\d+\.not_after": (str,),
    },
    regex=True,
)


async def test_diagnostics(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_client: ClientSessionGenerator,
    snapshot: SnapshotAssertion,
) -> None:
    runtime.decisions.preregister("oven", "482913", "Kitchen oven")
    await appliance_client.enroll(
        build_csr(ec.generate_private_key(ec.SECP256R1()), "oven"), username="oven", password="482913"
    )
    await appliance_client.simpleenroll(
        build_csr(ec.generate_private_key(ec.SECP256R1()), "fridge"), username="fridge", password="777777"
    )
    await hass.async_block_till_done()

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    text = str(diagnostics)
    for secret in ("482913", "777777", "PRIVATE KEY", "secret_digest"):
        assert secret not in text
    assert diagnostics == snapshot(matcher=VARIES)
