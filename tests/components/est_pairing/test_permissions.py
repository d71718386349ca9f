"""Who may change what the household CA trusts: the owner (an administrator), never another user."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from homeassistant.auth.const import GROUP_ID_USER
from homeassistant.auth.models import User
from homeassistant.const import ATTR_ENTITY_ID
from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import Unauthorized
from homeassistant.helpers import entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, MockUser
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator, WebSocketGenerator

from custom_components.est_pairing.const import DOMAIN, SUBENTRY_APPLIANCE
from custom_components.est_pairing.runtime import EstRuntime
from est_tools.appliance.client import EstClient, Pending, build_csr

from . import device_for


@pytest.fixture
async def household_member(hass: HomeAssistant) -> User:
    """A user who is not an administrator (Home Assistant's default for a new person)."""
    group = await hass.auth.async_get_group(GROUP_ID_USER)
    assert group is not None
    user: User = MockUser(groups=[group]).add_to_hass(hass)
    return user


@pytest.fixture(params=["household_member", "hass_read_only_user"])
def non_admin(request: pytest.FixtureRequest) -> User:
    """Each kind of user who is not an administrator."""
    user = request.getfixturevalue(request.param)
    assert isinstance(user, User)
    return user


async def call(hass: HomeAssistant, user: User, service: str, data: dict[str, Any]) -> None:
    await hass.services.async_call(DOMAIN, service, data, blocking=True, context=Context(user_id=user.id))


async def test_a_non_admin_cannot_preregister_an_appliance_and_enroll_it(
    hass: HomeAssistant, runtime: EstRuntime, appliance_client: EstClient, non_admin: User
) -> None:
    with pytest.raises(Unauthorized):
        await call(hass, non_admin, "preregister_appliance", {"appliance_id": "rogue", "pin": "654321"})
    await hass.async_block_till_done()
    assert runtime.service.policy.registration("rogue") is None

    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "rogue")
    answer = await appliance_client.simpleenroll(csr, username="rogue", password="654321")
    assert isinstance(answer, Pending)  # it waits for the owner like any unknown appliance
    await hass.async_block_till_done()
    assert device_for(hass, "rogue") is None


async def test_a_non_admin_cannot_revoke_an_appliance_with_the_action(
    hass: HomeAssistant, runtime: EstRuntime, non_admin: User
) -> None:
    runtime.decisions.preregister("oven", "123456", "Kitchen oven")
    await hass.async_block_till_done()
    oven = device_for(hass, "oven")
    assert oven is not None
    with pytest.raises(Unauthorized):
        await call(hass, non_admin, "revoke_certificate", {"device_id": oven.id})
    assert runtime.service.policy.registration("oven") is not None


async def test_the_owner_still_can(hass: HomeAssistant, runtime: EstRuntime, hass_admin_user: User) -> None:
    await call(hass, hass_admin_user, "preregister_appliance", {"appliance_id": "oven", "pin": "123456"})
    await hass.async_block_till_done()
    assert runtime.service.policy.registration("oven") is not None
    oven = device_for(hass, "oven")
    assert oven is not None
    await call(hass, hass_admin_user, "revoke_certificate", {"device_id": oven.id})
    assert runtime.service.policy.registration("oven") is None


async def test_any_user_may_export_the_public_ca(
    hass: HomeAssistant, runtime: EstRuntime, non_admin: User
) -> None:
    """The certificate, its fingerprint and the QR payload are what /cacerts serves to anyone on the LAN."""
    response = await hass.services.async_call(
        DOMAIN,
        "export_ca",
        blocking=True,
        return_response=True,
        context=Context(user_id=non_admin.id),
    )
    assert response is not None
    assert response["fingerprint"] == runtime.service.ca.fingerprint
    assert set(response) == {"certificate", "fingerprint", "qr_payload", "expires"}


async def test_the_revoke_button_follows_home_assistants_entity_permissions(
    hass: HomeAssistant, runtime: EstRuntime, hass_read_only_user: User, household_member: User
) -> None:
    """Kept for every user who may operate the appliance's entities: revoking removes trust only."""
    runtime.decisions.preregister("oven", "123456", "Kitchen oven")
    await hass.async_block_till_done()
    (button,) = [e.entity_id for e in er.async_get(hass).entities.values() if e.domain == "button"]

    async def press(user: User) -> None:
        await hass.services.async_call(
            "button", "press", {ATTR_ENTITY_ID: button}, blocking=True, context=Context(user_id=user.id)
        )

    with pytest.raises(Unauthorized):
        await press(hass_read_only_user)  # may look, not operate
    assert runtime.service.policy.registration("oven") is not None
    await press(household_member)  # a household member operates the appliance, its pairing included
    assert runtime.service.policy.registration("oven") is None


async def pending_flow_id(hass: HomeAssistant, appliance_client: EstClient) -> str:
    """An appliance asks without a pre-registration: its confirm dialog waits under Discovered."""
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
    assert isinstance(await appliance_client.simpleenroll(csr, username="oven", password="482913"), Pending)
    await hass.async_block_till_done()
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    return flow["flow_id"]


async def test_a_read_only_user_cannot_approve_reject_or_ignore_a_request(
    hass: HomeAssistant,
    runtime: EstRuntime,
    appliance_client: EstClient,
    hass_client: ClientSessionGenerator,
    hass_ws_client: WebSocketGenerator,
    hass_read_only_access_token: str,
) -> None:
    assert await async_setup_component(hass, "config", {})
    # Both clients before any request: the HTTP server takes no new routes once it has started.
    websocket = await hass_ws_client(hass, hass_read_only_access_token)
    client = await hass_client(hass_read_only_access_token)
    flow_id = await pending_flow_id(hass, appliance_client)
    url = f"/api/config/config_entries/flow/{flow_id}"
    for step in ({"next_step_id": "pin"}, {"next_step_id": "reject"}, {"pin": "482913"}):
        response = await client.post(url, json=step)
        assert response.status == HTTPStatus.UNAUTHORIZED, step
    assert (await client.get(url)).status == HTTPStatus.UNAUTHORIZED

    await websocket.send_json_auto_id(
        {"type": "config_entries/ignore_flow", "flow_id": flow_id, "title": "x"}
    )
    answer = await websocket.receive_json()
    assert not answer["success"]
    assert answer["error"]["code"] == "unauthorized"

    # Home Assistant lets any user delete a flow in progress: the request keeps its card all the same.
    identity = hass.config_entries.flow.async_get(flow_id)["context"].get("unique_id")
    assert (await client.delete(url)).status == HTTPStatus.OK
    await hass.async_block_till_done()
    (card,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert card["context"].get("unique_id") == identity
    assert card["step_id"] == "confirm"
    assert len(runtime.service.policy.pending_requests()) == 1
    assert runtime.service.policy.registration("oven") is None
    assert hass.config_entries.async_entries(DOMAIN, include_ignore=True) == [runtime.entry]


async def test_a_read_only_user_cannot_open_the_hubs_dialogs(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    hass_client: ClientSessionGenerator,
    hass_read_only_access_token: str,
) -> None:
    """Pre-register appliance (a subentry flow), Configure (options) and Reconfigure are the owner's."""
    assert await async_setup_component(hass, "config", {})
    client = await hass_client(hass_read_only_access_token)
    attempts = {
        "/api/config/config_entries/subentries/flow": {
            "handler": [init_integration.entry_id, SUBENTRY_APPLIANCE]
        },
        "/api/config/config_entries/options/flow": {"handler": init_integration.entry_id},
        "/api/config/config_entries/flow": {
            "handler": DOMAIN,
            "entry_id": init_integration.entry_id,
            "source": "reconfigure",
        },
    }
    for url, body in attempts.items():
        response = await client.post(url, json=body)
        assert response.status == HTTPStatus.UNAUTHORIZED, url
    assert init_integration.subentries == {}
    owner = await hass_client()
    for url, body in attempts.items():
        response = await owner.post(url, json=body)
        assert response.status == HTTPStatus.OK, url
