"""Tests of the Home Assistant side (custom_components/est_pairing), with what several of them share."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from unittest.mock import patch

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest

from custom_components.est_pairing.const import DOMAIN
from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.csr import ApplianceDetails
from custom_components.est_pairing.est.errors import CertificateRevoked
from custom_components.est_pairing.est.registrar import Issued, Peer
from custom_components.est_pairing.est.verifiers import PinVerifier
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, Pending, build_csr, renewal_csr

ENTRY_ID = "01JEST00HUB000000000000000"  # fixed: unique ids in entity snapshots contain it
SNAPSHOT_TIME = "2026-01-15 10:00:00+00:00"  # when fixtures/household_ca.json was created
ANNOUNCE_ADDRESSES = ["192.168.1.2"]
OVEN = ApplianceDetails(name="Kitchen oven", model="OV-200", manufacturer="Acme", serial_number="SN-42")


def key() -> ec.EllipticCurvePrivateKey:
    """A new appliance key."""
    return ec.generate_private_key(ec.SECP256R1())


async def ask(
    hass: HomeAssistant, client: EstClient, private_key: ec.EllipticCurvePrivateKey, pin: str = "482913"
) -> x509.Certificate | Pending:
    """One simpleenroll from appliance ``oven``, then let Home Assistant react."""
    result = await client.simpleenroll(
        build_csr(private_key, "oven", details=OVEN), username="oven", password=pin
    )
    await hass.async_block_till_done()
    return result


async def paired_oven(
    hass: HomeAssistant, runtime: EstRuntime, client: EstClient
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Appliance ``oven``, pre-registered and enrolled: its certificate and key."""
    await runtime.decisions.async_preregister("oven", "482913", "Kitchen oven")
    await hass.async_block_till_done()
    oven_key = key()
    certificate = await ask(hass, client, oven_key)
    assert isinstance(certificate, x509.Certificate)
    return certificate, oven_key


async def assert_renewal_refused(
    runtime: EstRuntime, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey
) -> None:
    """The appliance's certificate, revoked, no longer renews at the hub's listener."""
    url = f"https://127.0.0.1:{runtime.service.port}"
    async with EstClient(url, runtime.service.ca.certificate) as client:
        with pytest.raises(CertificateRevoked):
            await client.reenroll(renewal_csr(private_key, certificate), certificate, private_key)


class HeldVerifier:
    """The SRP worker's verifiers, each held back until released: what happens while one is made."""

    def __init__(self, runtime: EstRuntime) -> None:
        self.making = asyncio.Event()
        self.released = asyncio.Event()
        self._make = runtime.service.srp.make_verifier

    async def make_verifier(self, appliance_id: str, pin: str) -> PinVerifier:
        self.making.set()
        await self.released.wait()
        return await self._make(appliance_id, pin)


@contextmanager
def verifiers_held(runtime: EstRuntime) -> Iterator[HeldVerifier]:
    """Hold the hub's verifiers back (release them with ``released.set()``)."""
    held = HeldVerifier(runtime)
    with patch.object(runtime.service.srp, "make_verifier", held.make_verifier):
        yield held


async def with_two_appliances(hass: HomeAssistant, runtime: EstRuntime) -> None:
    """The oven, pre-registered (awaiting its certificate), and the fridge, enrolled.

    Through the registrar, as the listener hands it a request: the listener is not the point here.
    """
    await runtime.decisions.async_preregister("oven", "482913", "Kitchen oven")
    await runtime.decisions.async_preregister("fridge", "551207", "Fridge")
    fridge = Peer("192.168.1.20", BasicCredentials("fridge", "551207"))
    details = ApplianceDetails(model="FR-1", manufacturer="Acme", serial_number="SN-7")
    issued = await runtime.service.registrar.enroll(fridge, build_csr(key(), "fridge", details=details))
    assert isinstance(issued, Issued)
    await hass.async_block_till_done()


def entity_state(hass: HomeAssistant, unique_id_suffix: str) -> str:
    """The state of the one entity whose unique id ends so."""
    registry = er.async_get(hass)
    (entity_id,) = [e.entity_id for e in registry.entities.values() if e.unique_id.endswith(unique_id_suffix)]
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state


def device_for(hass: HomeAssistant, identifier: str) -> dr.DeviceEntry | None:
    """The device with identifier (DOMAIN, identifier), found the same way on every supported release."""
    registry = dr.async_get(hass)
    for entry in hass.config_entries.async_entries(DOMAIN):
        for device in dr.async_entries_for_config_entry(registry, entry.entry_id):
            if (DOMAIN, identifier) in device.identifiers:
                return device
    return None
