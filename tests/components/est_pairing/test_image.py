"""The hub's enrollment QR code as a picture: what it shows, read back with a real QR decoder."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
import io
from unittest.mock import patch

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
from PIL import Image
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    snapshot_platform,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
import zxingcpp

from custom_components.est_pairing.const import DOMAIN, UPKEEP_INTERVAL
from custom_components.est_pairing.runtime import EstRuntime

from . import SNAPSHOT_TIME

QR_CODE = "image.home_household_ca_enrollment_qr_code"
QR_PAYLOAD = "sensor.home_household_ca_enrollment_qr_payload"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def state_of(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state


async def picture(hass_client: ClientSessionGenerator) -> bytes:
    """The PNG the frontend shows, through Home Assistant's image API."""
    client = await hass_client()
    response = await client.get(f"/api/image_proxy/{QR_CODE}")
    assert response.status == HTTPStatus.OK
    assert response.content_type == "image/png"
    body: bytes = await response.read()
    assert body.startswith(PNG_SIGNATURE)
    return body


def decoded(png: bytes) -> str:
    """What a phone's camera reads from the picture (ZXing)."""
    (barcode,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert barcode.format == zxingcpp.BarcodeFormat.QRCode
    text: str = barcode.text
    return text


@pytest.fixture
def stable_access_token() -> Iterator[None]:
    """The token in the picture's URL, which Home Assistant draws at random, the same at every run."""
    with patch("random.SystemRandom.getrandbits", return_value=123123123123):
        yield


@pytest.mark.freeze_time(SNAPSHOT_TIME)
@pytest.mark.parametrize("platforms", [[Platform.IMAGE]], ids=["image"])
@pytest.mark.usefixtures("stable_access_token", "mock_est_service", "init_integration")
async def test_entities(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    device_registry: dr.DeviceRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    await snapshot_platform(hass, entity_registry, snapshot, mock_config_entry.entry_id)
    entry = entity_registry.async_get(QR_CODE)
    assert entry is not None
    device = device_registry.async_get(entry.device_id or "")
    assert device is not None
    assert device.name == "Home Household CA"
    assert dt_util.parse_datetime(state_of(hass, QR_CODE)) is not None  # an image's state: when it changed


async def test_the_picture_is_the_qr_code_of_the_payload(
    hass: HomeAssistant, runtime: EstRuntime, hass_client: ClientSessionGenerator
) -> None:
    payload = decoded(await picture(hass_client))
    assert payload == runtime.coordinator.data.qr_payload == state_of(hass, QR_PAYLOAD)
    assert payload == (
        f"est://192.168.1.2:{runtime.service.port}/.well-known/est?sha256={runtime.service.ca.fingerprint}"
    )


async def test_a_new_address_redraws_it(
    hass: HomeAssistant, runtime: EstRuntime, hass_client: ClientSessionGenerator
) -> None:
    before, drawn_before = state_of(hass, QR_CODE), await picture(hass_client)
    with patch("homeassistant.components.network.async_get_announce_addresses", return_value=["192.168.7.7"]):
        async_fire_time_changed(hass, dt_util.utcnow() + UPKEEP_INTERVAL)
        await hass.async_block_till_done(wait_background_tasks=True)
        assert state_of(hass, QR_CODE) == before  # not yet: the certificate does not cover it (a repair)
        await runtime.async_reissue_listener_certificate()  # the repair's fix
        await hass.async_block_till_done()

    after, drawn_after = state_of(hass, QR_CODE), await picture(hass_client)
    assert dt_util.parse_datetime(after) > dt_util.parse_datetime(before)  # type: ignore[operator]
    assert drawn_after != drawn_before
    assert decoded(drawn_after).startswith("est://192.168.7.7:")
    assert decoded(drawn_after) == runtime.coordinator.data.qr_payload == state_of(hass, QR_PAYLOAD)


async def test_a_new_port_redraws_it(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client: ClientSessionGenerator
) -> None:
    old_port = init_integration.runtime_data.service.port
    drawn_before = await picture(hass_client)
    assert await hass.config_entries.async_reload(init_integration.entry_id)  # port 0: another free port
    await hass.async_block_till_done()
    runtime: EstRuntime = init_integration.runtime_data
    assert runtime.service.port != old_port
    drawn_after = await picture(hass_client)
    assert drawn_after != drawn_before
    assert decoded(drawn_after) == runtime.coordinator.data.qr_payload
    assert f":{runtime.service.port}/" in decoded(drawn_after)


async def test_a_new_household_ca_redraws_it(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    mock_config_entry: MockConfigEntry,
    hass_client: ClientSessionGenerator,
) -> None:
    """A hub deleted and added again has a new CA: the picture names the new fingerprint."""
    old_fingerprint = init_integration.runtime_data.service.ca.fingerprint
    drawn_before = await picture(hass_client)
    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    hub = MockConfigEntry(domain=DOMAIN, unique_id=DOMAIN, data=dict(mock_config_entry.data))
    hub.add_to_hass(hass)
    assert await hass.config_entries.async_setup(hub.entry_id)
    await hass.async_block_till_done()
    runtime: EstRuntime = hub.runtime_data
    assert runtime.service.ca.fingerprint != old_fingerprint
    drawn_after = await picture(hass_client)
    assert drawn_after != drawn_before
    assert decoded(drawn_after).endswith(f"sha256={runtime.service.ca.fingerprint}")
