"""The appliance's HTTP side of the PIN exchange against answers the hub never gives: a table of them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
import pytest

from custom_components.est_pairing.est import pake
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.errors import Busy, EstError, ProtocolError
from est_tools.appliance.client import Pending, build_csr
from est_tools.appliance.exchange import PinExchangeClient
from est_tools.appliance.pake_client import ApplianceExchange
from tests.est.scripted import serving_tls

type Answer = Callable[[web.Request], web.Response]


def offering(methods: object) -> Answer:
    return lambda _request: web.json_response({"methods": methods})


@pytest.mark.parametrize(
    ("answer", "offered"),
    [
        (offering(["srp6a-sha512-3072"]), True),
        (offering(["spake2plus"]), False),  # another method only
        (offering("srp6a-sha512-3072"), False),  # not a list: no offer
        (lambda _request: web.Response(text="srp6a-sha512-3072"), False),  # not JSON
        (lambda _request: web.Response(status=404), False),  # a hub from before the exchange
        (lambda _request: web.Response(status=401, headers={"WWW-Authenticate": "Basic"}), False),
        (lambda _request: web.Response(status=202, headers={"Retry-After": "5"}), False),
    ],
)
async def test_only_an_offer_of_the_method_is_an_offer(
    ca: HouseholdCA, answer: Answer, offered: bool
) -> None:
    async with serving(ca, get=answer) as url, PinExchangeClient(url) as client:
        assert await client.offered() is offered


async def test_a_busy_hub_is_asked_again_rather_than_taken_for_one_without_the_exchange(
    ca: HouseholdCA,
) -> None:
    busy = web.Response(status=503, text="too many PIN exchanges are open", headers={"Retry-After": "3"})
    async with serving(ca, get=lambda _request: busy) as url, PinExchangeClient(url) as client:
        with pytest.raises(Busy) as refused:
            await client.offered()
    assert refused.value.retry_after == 3


@pytest.mark.parametrize(
    ("answers", "error", "reason"),
    [
        ([web.Response(status=404)], ProtocolError, "the hub does not offer the PIN exchange (any more)"),
        (
            [web.json_response({"session": "s", "salt": "AQ==", "B": "Ag=="}), web.Response(status=202)],
            ProtocolError,
            "the hub answered 202 in the middle of a PIN exchange",
        ),
        ([web.json_response({"session": "s"})], ProtocolError, "field 'salt' is missing"),
    ],
)
async def test_an_answer_out_of_turn_stops_the_attempt(
    ca: HouseholdCA, answers: list[web.Response], error: type[EstError], reason: str
) -> None:
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven").public_bytes(Encoding.DER)
    async with serving(ca, post=lambda _request: answers.pop(0)) as url, PinExchangeClient(url) as client:
        with pytest.raises(error, match=reason.replace("(", r"\(").replace(")", r"\)")):
            await client.attempt(ApplianceExchange("oven", "123456", csr))


async def test_a_202_to_the_start_is_a_wait(ca: HouseholdCA) -> None:
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven").public_bytes(Encoding.DER)
    waiting = web.Response(status=202, reason="waiting for the owner", headers={"Retry-After": "7"})
    async with serving(ca, post=lambda _request: waiting) as url, PinExchangeClient(url) as client:
        assert await client.attempt(ApplianceExchange("oven", "123456", csr)) == Pending(
            7, "waiting for the owner"
        )


def test_the_client_is_used_in_async_with() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        PinExchangeClient("https://127.0.0.1:1")._open()


def serving(
    ca: HouseholdCA, *, get: Answer | None = None, post: Answer | None = None
) -> AbstractAsyncContextManager[str]:
    """The exchange's resource answered by ``get`` and ``post``, over TLS on 127.0.0.1; its URL."""
    app = web.Application()

    async def answer(request: web.Request) -> web.Response:
        handler = get if request.method == "GET" else post
        assert handler is not None
        await request.read()
        return handler(request)

    app.router.add_route("*", f"/.well-known/est/{pake.OPERATION}", answer)
    return serving_tls(ca, app)
