"""What a fake hub and a relay learn from the reference appliance pairing with its PIN: nothing usable.

Each runs the real command (``python -m est_tools.appliance ... --once``) against a server on
127.0.0.1 that logs every request line, header and body it gets.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
import hashlib
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from custom_components.est_pairing.est import pake, wire
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.verifiers import PinVerifier
from est_tools.appliance.cli import ExitCode
from est_tools.appliance.client import client_ssl_context
from tests.appliance_process import ApplianceProcess
from tests.est.conftest import oven_server
from tests.est.scripted import serving_tls

ROOT = Path(__file__).parents[2]
PIN = "123456"  # the pre-registered oven's (tests/est/conftest.py)


@dataclass
class Wiretap:
    """Everything a server in the middle saw: request lines, headers and bodies."""

    requests: list[bytes] = field(default_factory=list)

    async def record(self, request: web.Request) -> bytes:
        body = await request.read()
        headers = b"".join(f"{name}: {value}\r\n".encode() for name, value in request.headers.items())
        self.requests.append(f"{request.method} {request.path_qs}\r\n".encode() + headers + b"\r\n" + body)
        return body

    @property
    def seen(self) -> bytes:
        return b"\n".join(self.requests)

    def assert_reveals_nothing_about(self, pin: str) -> None:
        """Neither the PIN nor a hash of it, in any encoding; no credentials at all."""
        assert self.requests, "the appliance never came"
        leaks = [pin.encode(), base64.b64encode(f"oven:{pin}".encode())]
        for name in ("md5", "sha1", "sha256", "sha512"):
            for data in (pin.encode(), f"oven:{pin}".encode()):
                digest = hashlib.new(name, data).digest()
                leaks += [
                    digest,
                    digest.hex().encode(),
                    digest.hex().upper().encode(),
                    base64.b64encode(digest),
                ]
        seen = self.seen
        assert [leak for leak in leaks if leak in seen] == []
        assert b"authorization:" not in seen.lower()


async def run_appliance(state_dir: Path, server_url: str, *extra: str) -> tuple[int, str]:
    """``scripts/appliance --id oven --pin PIN --server URL --once``, as a user runs it: exit code, output."""
    appliance = await ApplianceProcess.start(
        *("--id", "oven", "--pin", PIN, "--server", server_url, "--once", "--state-dir", str(state_dir)),
        *("--approval-timeout", "20"),  # an appliance that waits for a fake hub's owner gives up soon
        *extra,
        step_timeout=120,
    )
    code = await appliance.exit_code()
    return code, appliance.output


@asynccontextmanager
async def fake_hub(wiretap: Wiretap, *, offers_exchange: bool = False) -> AsyncIterator[str]:
    """An EST server with a CA of its own: 401 to coax credentials, 202 to anything else.

    It hands out its CA (an appliance that trusts on first use takes it). With ``offers_exchange``
    it also claims the PIN exchange and answers a start with a challenge from a verifier it made for
    a PIN it guessed, and whatever follows with made-up proofs.
    """
    ca = HouseholdCA.create("Fake")
    guess = PinVerifier.create("oven", "000000")
    exchanges = pake.HubExchanges()

    async def answer(request: web.Request) -> web.Response:
        body = await wiretap.record(request)
        if request.path.endswith("/cacerts"):
            return web.Response(body=wire.encode_certs_only([ca.certificate]), content_type=wire.PKCS7_MIME)
        if offers_exchange and request.path.endswith("/pake"):
            if request.method == "GET":
                return web.json_response(pake.offer())
            message = pake.parse_request(body)
            if isinstance(message, pake.StartRequest):
                return web.json_response((await exchanges.start(message, guess, None)).to_dict())
            return web.json_response({"M2": base64.b64encode(b"\1" * 64).decode()})
        if request.method == "POST" and "Authorization" not in request.headers:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="EST"'})
        return web.Response(status=202, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serving_tls(ca, app) as url:
        yield url


async def test_a_fake_hub_learns_nothing_about_the_pin_and_the_appliance_does_not_enroll(
    tmp_path: Path,
) -> None:
    wiretap = Wiretap()
    async with fake_hub(wiretap) as url:
        code, output = await run_appliance(tmp_path, url)
    assert code == ExitCode.NO_EXCHANGE, output
    assert "does not offer the PIN exchange, and this appliance sends its PIN no other way" in output
    wiretap.assert_reveals_nothing_about(PIN)
    assert not (tmp_path / "certificate.pem").exists()
    assert not (tmp_path / "ca.pem").exists()  # nothing it said was trusted


async def test_a_fake_hub_that_claims_the_exchange_gets_one_guess_per_attempt_and_nothing_else(
    tmp_path: Path,
) -> None:
    wiretap = Wiretap()
    async with fake_hub(wiretap, offers_exchange=True) as url:
        code, output = await run_appliance(tmp_path, url)
    assert code == ExitCode.EXCHANGE_FAILED, output
    assert "the hub could not prove it knows this appliance's PIN" in output
    wiretap.assert_reveals_nothing_about(PIN)
    starts = [request for request in wiretap.requests if b'"step":"start"' in request]
    proves = [request for request in wiretap.requests if b'"step":"prove"' in request]
    assert len(starts) == len(proves) == 3  # each attempt: one proof, tested against one guessed verifier
    assert not [request for request in wiretap.requests if b'"step":"enroll"' in request]
    assert not (tmp_path / "certificate.pem").exists()
    assert not (tmp_path / "ca.pem").exists()


async def test_only_legacy_basic_sends_the_pin_in_http_basic_to_a_hub_without_the_exchange(
    tmp_path: Path,
) -> None:
    """The caveat of --legacy-basic, for hubs from before the exchange: the fake hub gets the PIN."""
    wiretap = Wiretap()
    async with fake_hub(wiretap) as url:
        code, output = await run_appliance(tmp_path, url, "--legacy-basic", "--approval-timeout", "2")
    assert code == ExitCode.NOT_APPROVED  # it sent the PIN, and waited
    assert "sending the PIN in HTTP Basic (--legacy-basic" in output
    assert b"Authorization: Basic " + base64.b64encode(f"oven:{PIN}".encode()) in wiretap.seen


@asynccontextmanager
async def relay(wiretap: Wiretap, hub_url: str, *, swap_ca: HouseholdCA | None = None) -> AsyncIterator[str]:
    """A server in the middle, with a TLS certificate of its own, that forwards every request to the hub.

    ``swap_ca``: it puts that CA in the hub's last answer of the exchange instead of the hub's.
    """
    own = HouseholdCA.create("Relay")
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await wiretap.record(request)
        headers = {name: value for name, value in request.headers.items() if name.lower() != "host"}
        async with session.request(
            request.method,
            hub_url + request.path_qs,
            data=body,
            headers=headers,
            ssl=client_ssl_context(None),
        ) as answer:
            payload = await answer.read()
            if swap_ca is not None and b'"mac"' in payload:
                final = pake.FinalAnswer.parse(payload)
                payload = pake.encode(
                    {
                        **final.to_dict(),
                        "ca": base64.b64encode(
                            swap_ca.certificate.public_bytes(serialization.Encoding.DER)
                        ).decode(),
                    }
                )
            kept = {
                name: value
                for name, value in answer.headers.items()
                if name in {"Content-Type", "Retry-After"}
            }
            return web.Response(status=answer.status, reason=answer.reason, body=payload, headers=kept)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    try:
        async with serving_tls(own, app) as url:
            yield url
    finally:
        await session.close()


async def test_through_a_relay_the_appliance_gets_the_real_ca_and_its_own_key_certified(
    tmp_path: Path,
) -> None:
    wiretap = Wiretap()
    async with oven_server(tmp_path / "hub") as hub, relay(wiretap, hub.url) as url:
        code, output = await run_appliance(tmp_path / "oven", url)
        assert code == ExitCode.OK, output
        ca = hub.service.ca.certificate
        (record,) = hub.service.ledger.for_appliance("oven")
    assert x509.load_pem_x509_certificate((tmp_path / "oven" / "ca.pem").read_bytes()) == ca
    certificate = x509.load_pem_x509_certificate((tmp_path / "oven" / "certificate.pem").read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "oven" / "key.pem").read_bytes(), password=None)
    assert certificate.public_key() == key.public_key()
    certificate.verify_directly_issued_by(ca)
    assert certificate.serial_number == record.serial_number
    wiretap.assert_reveals_nothing_about(PIN)


async def test_a_relay_cannot_make_the_appliance_pin_its_ca(tmp_path: Path) -> None:
    wiretap = Wiretap()
    async with (
        oven_server(tmp_path / "hub") as hub,
        relay(wiretap, hub.url, swap_ca=HouseholdCA.create("Relay")) as url,
    ):
        code, output = await run_appliance(tmp_path / "oven", url)
    assert code == ExitCode.EXCHANGE_FAILED, output
    assert "the CA and certificate are not the ones the PIN exchange authenticated" in output
    assert not (tmp_path / "oven" / "ca.pem").exists()
    assert not (tmp_path / "oven" / "certificate.pem").exists()


async def test_a_hub_that_keeps_saying_start_again_is_not_asked_without_a_pause(tmp_path: Path) -> None:
    """One expired exchange is started again at once; a hub that answers every one so is waited for."""
    wiretap = Wiretap()
    ca = HouseholdCA.create("Odd")

    async def answer(request: web.Request) -> web.Response:
        await wiretap.record(request)
        if request.method == "GET" and request.path.endswith("/pake"):
            return web.json_response(pake.offer())
        return web.Response(status=400, text="this PIN exchange is unknown or expired: start again\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serving_tls(ca, app) as url:
        code, output = await run_appliance(tmp_path, url, "--approval-timeout", "3")
    assert code != ExitCode.OK, output
    assert output.count("starting it again") == 1, output
    assert len([r for r in wiretap.requests if r.startswith(b"POST")]) <= 4, output
