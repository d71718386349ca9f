"""The reference client against the real listener: bootstrap, the 202 loop, errors it reports."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.errors import (
    ApprovalTimeout,
    AuthenticationRequired,
    CertificateRevoked,
    FingerprintMismatch,
    NotAllowed,
    ProtocolError,
    TooManyRequests,
    UnknownResource,
)
from custom_components.est_pairing.est.fingerprints import format_fingerprint
from custom_components.est_pairing.est.limits import FREE_ATTEMPTS, LOCKOUT_BASE
from custom_components.est_pairing.est.wire import EST_PATH
from est_tools.appliance.client import (
    EstClient,
    Pending,
    build_csr,
    renewal_csr,
)
from tests.est.conftest import RunningServer
from tests.est.scripted import Step, scripted_hub, serving_tls


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def test_bootstrap_with_the_owners_fingerprint(server: RunningServer) -> None:
    typed = format_fingerprint(server.service.ca.fingerprint).replace(" ", ":")
    bootstrap = await EstClient.fetch_ca(server.url, expected_fingerprint=typed)
    assert bootstrap.verified_out_of_band
    assert bootstrap.ca_certificate == server.service.ca.certificate


async def test_bootstrap_refuses_a_different_ca(server: RunningServer) -> None:
    with pytest.raises(FingerprintMismatch, match=server.service.ca.fingerprint):
        await EstClient.fetch_ca(server.url, expected_fingerprint="ab" * 32)


async def test_bootstrap_on_first_use_reports_what_it_trusted(server: RunningServer) -> None:
    bootstrap = await EstClient.fetch_ca(server.url, label="appliance")
    assert not bootstrap.verified_out_of_band
    assert bootstrap.fingerprint == server.service.ca.fingerprint


async def test_the_verified_session_refuses_another_ca(server: RunningServer) -> None:
    async with EstClient(server.url, HouseholdCA.create("Impostor").certificate) as client:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await client.cacerts()


async def test_every_operation(server: RunningServer) -> None:
    async with server.client() as client:
        assert await client.cacerts() == [server.service.ca.certificate]
        assert len(await client.csrattrs()) == 2
        oven_key = key()
        certificate = await client.enroll(build_csr(oven_key, "oven"), username="oven", password="123456")
        renewed = await client.reenroll(renewal_csr(oven_key, certificate), certificate, oven_key)
        assert renewed.subject == certificate.subject
        await server.service.policy.preregister("stove", "123456")  # oven used its pre-registration
        private_key, generated = await client.serverkeygen(
            build_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "stove"),
            username="stove",
            password="123456",
        )
        assert isinstance(private_key, rsa.RSAPrivateKey)
        assert generated.public_key() == private_key.public_key()
        await server.service.registrar.revoke_appliance("oven")
        crl = await client.crl()
        assert crl.get_revoked_certificate_by_serial_number(renewed.serial_number) is not None
        with pytest.raises(CertificateRevoked):
            await client.reenroll(renewal_csr(oven_key, renewed), renewed, oven_key)


async def test_enroll_waits_for_the_owner(server: RunningServer) -> None:
    seen: list[Pending] = []

    async def owner() -> None:
        while not server.service.policy.pending_requests():
            await asyncio.sleep(0.01)
        (pending,) = server.service.policy.pending_requests()
        await server.service.policy.approve(pending.request_id, pin="246810")

    approval = asyncio.create_task(owner())
    async with server.client() as client:
        certificate = await asyncio.wait_for(
            client.enroll(
                build_csr(key(), "fridge"),
                username="fridge",
                password="246810",
                on_pending=seen.append,
            ),
            timeout=30,
        )
    await approval
    assert certificate.subject.rfc4514_string() == "CN=fridge"
    assert seen and seen[0].retry_after >= 1
    assert seen[0].message == "waiting for the owner to approve this appliance"  # the status line's


async def test_enroll_gives_up_after_its_timeout(server: RunningServer) -> None:
    async with server.client() as client:
        with pytest.raises(ApprovalTimeout):
            await client.enroll(
                build_csr(key(), "fridge"), username="fridge", password="1", approval_timeout=0.1
            )


async def test_refusals_become_library_errors(server: RunningServer) -> None:
    csr = build_csr(key(), "oven")
    async with server.client() as client:
        with pytest.raises(AuthenticationRequired, match=r"^401: authenticate with the appliance id and PIN"):
            await client.simpleenroll(csr)  # the reason from the status line: a 401 has no body
        for _ in range(FREE_ATTEMPTS):
            with pytest.raises(AuthenticationRequired, match="wrong secret"):
                await client.simpleenroll(csr, username="oven", password="000000")
        with pytest.raises(TooManyRequests) as locked:
            await client.simpleenroll(csr, username="oven", password="123456")
        # The first lockout's length, as the server counts it down (the client's floor is 1 s).
        assert LOCKOUT_BASE - 10 <= locked.value.retry_after <= LOCKOUT_BASE
        fridge_csr = build_csr(key(), "fridge")
        await client.simpleenroll(fridge_csr, username="fridge", password="")
        (pending,) = server.service.policy.pending_requests()
        server.service.policy.reject(pending.request_id)
        with pytest.raises(NotAllowed, match="403"):
            await client.simpleenroll(fridge_csr, username="fridge", password="")
    async with EstClient(server.url, server.service.ca.certificate, label="nope") as client:
        with pytest.raises(UnknownResource):
            await client.cacerts()


async def test_a_certificate_for_another_key_is_refused(server: RunningServer) -> None:
    async with server.client() as client:
        certificate = await client.enroll(build_csr(key(), "oven"), username="oven", password="123456")
        body = wire.encode_certs_only([certificate])
        with pytest.raises(ProtocolError, match="different key"):
            client._issued_to(build_csr(key(), "oven"), body)


async def test_csr_attributes_of_an_unknown_label_are_an_empty_list(server: RunningServer) -> None:
    """A 404 for /csrattrs means no attributes (RFC 7030 §4.5.2), not an error."""
    async with EstClient(server.url, server.service.ca.certificate, label="none") as client:
        with pytest.raises(UnknownResource):  # the label is unknown: every operation is a 404
            await client.cacerts()
        assert await client.csrattrs() == []


async def test_a_204_for_csr_attributes_is_an_empty_list(ca: HouseholdCA) -> None:
    """RFC 7030 §4.5.2: a server with no attributes to ask for may answer 204 No Content. The
    library's listener always asks for some, so a bare aiohttp server answers here, over TLS on
    127.0.0.1 with a certificate from the household CA the client trusts."""
    asked: list[str] = []

    async def csrattrs(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get(f"{EST_PATH}/csrattrs", csrattrs)
    async with serving_tls(ca, app) as url, EstClient(url, ca.certificate) as client:
        assert await client.csrattrs() == []
    assert asked == [f"{EST_PATH}/csrattrs"]


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7),
        ({"Retry-After": "Sat, 01 Jan 2000 00:00:42 GMT", "Date": "Sat, 01 Jan 2000 00:00:00 GMT"}, 42),
        ({"Retry-After": "Sat, 01 Jan 2000 02:00:00 GMT", "Date": "Sat, 01 Jan 2000 00:00:00 GMT"}, 3600),
        ({"Retry-After": "Fri, 31 Dec 1999 23:00:00 GMT", "Date": "Sat, 01 Jan 2000 00:00:00 GMT"}, 1),
        ({"Retry-After": "Sat, 01 Jan 2000 00:00:42 GMT", "Date": "not a date"}, 1),
        ({"Retry-After": "soon"}, 5),
    ],
    ids=["seconds", "date", "date-clamped", "date-past", "date-without-usable-date-header", "unreadable"],
)
async def test_retry_after_as_seconds_or_an_http_date(
    ca: HouseholdCA, headers: dict[str, str], seconds: int
) -> None:
    """RFC 9110 §10.2.3: an HTTP-date counts from the answer's Date (else now), clamped like seconds."""
    async with (
        scripted_hub(ca, [Step(202, "waiting", headers)]) as hub,
        EstClient(hub.url, ca.certificate) as client,
    ):
        pending = await client.simpleenroll(build_csr(key(), "oven"), username="oven", password="1")
    assert pending == Pending(seconds, "waiting")
