"""pkilint's RFC 5280 linters over everything the household CA makes, obtained as clients obtain it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.tls import ListenerIdentity
from est_tools.appliance.client import Pending, build_csr
from est_tools.standalone import cli

from ..pkix_lint import ACCEPTED_NOTICES, LOCAL_CONSTRAINT, findings, problems
from .conftest import RunningServer, make_service, soon
from .manufacturer import LATER, Manufacturer

NOW = datetime.now(UTC)


@pytest.fixture
def manufacturer() -> Manufacturer:
    return Manufacturer.make(root_expires=LATER, intermediate_expires=LATER)


@pytest.fixture
async def server(tmp_path: Path, manufacturer: Manufacturer) -> AsyncIterator[RunningServer]:
    """The standalone server with appliances pre-registered and a manufacturer CA for factory certificates.

    A pre-registration admits one key: one appliance for each kind of certificate made with a PIN.
    """
    service = make_service(tmp_path, manufacturer_cas=[manufacturer.root])
    await service.load()
    for appliance_id in ("oven", "lamp", "kettle", "toaster"):
        await service.policy.preregister(appliance_id, "123456")
    service.policy.retry_after = 1
    await service.start()
    yield RunningServer(service, tmp_path)
    await service.stop()


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def test_every_certificate_and_crl_the_ca_makes_is_clean(
    server: RunningServer, manufacturer: Manufacturer, tmp_path: Path
) -> None:
    """No ERROR or WARNING, and no NOTICE but the one docs/reliability.md names."""
    policy = server.service.policy

    def approve(pending: Pending) -> None:  # the owner, in the middle of the 202 loop
        del pending
        for waiting in policy.pending_requests():
            soon(policy.approve(waiting.request_id))

    async with server.client() as client:
        empty_crl = await client.crl()
        issued = {
            "PIN": await client.enroll(build_csr(key(), "oven"), username="oven", password="123456"),
            "serverAuth with a name": await client.enroll(
                build_csr(key(), "lamp", dns_names=["lamp.local"]), username="lamp", password="123456"
            ),
            "fingerprint": await client.enroll(
                build_csr(key(), "fridge"), username="fridge", password="", on_pending=approve
            ),
            "factory": await client.enroll(
                build_csr(key(), "SN-7"),
                client_ssl=manufacturer.context(server, tmp_path),
                on_pending=approve,
            ),
            "serverkeygen (EC)": (
                await client.serverkeygen(build_csr(key(), "kettle"), username="kettle", password="123456")
            )[1],
            "serverkeygen (RSA)": (
                await client.serverkeygen(
                    build_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "toaster"),
                    username="toaster",
                    password="123456",
                )
            )[1],
        }
        await server.service.registrar.revoke_appliance("fridge")
        crl = await client.crl()
    ca = server.service.ca.certificate
    issued["listener"] = await server.presented_certificate()
    assert {kind: problems(certificate) for kind, certificate in issued.items()} == {
        kind: [] for kind in issued
    }
    assert {kind: problems(ca, certificate) for kind, certificate in issued.items()} == {
        kind: [] for kind in issued
    }
    assert problems(ca) == []
    # The one finding excused: pkilint's false ERROR for the name constraint ``local``, nothing else.
    assert [(finding.code, finding.message) for finding in findings(ca)] == [LOCAL_CONSTRAINT]
    assert (len(empty_crl), len(crl)) == (0, 1)
    assert problems(empty_crl) == problems(crl) == []
    # The accepted notice is still pkilint's verdict (else the exception in docs/reliability.md goes).
    assert {finding.code for finding in findings(issued["PIN"])} == ACCEPTED_NOTICES


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "hub.local", "hub.home.arpa", "fd00::10"])
def test_the_standalone_listener_certificate_is_clean(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca: HouseholdCA, host: str
) -> None:
    """Whatever ``--host`` is: no ``localhost`` or bare host name in it (pkilint: not a domain name)."""
    monkeypatch.setattr("socket.gethostname", lambda: "oven-hub")
    config = cli.service_config(
        cli.parser().parse_args(["serve", "--data-dir", str(tmp_path), "--host", host])
    )
    certificate = ListenerIdentity.issue(ca, config.names, NOW).certificate
    assert problems(certificate) == []
    assert problems(ca.certificate, certificate) == []


def test_the_linter_finds_what_it_must(ca: HouseholdCA) -> None:
    """A single-label name, as older releases wrote ``localhost`` into the listener certificate."""
    certificate = ca.issue_listener_certificate(
        public_key=key().public_key(),
        dns_names=["localhost"],
        ip_addresses=[],
        not_before=NOW,
        not_after=LATER,
    )
    assert [(f.code, f.severity) for f in problems(certificate)] == [
        ("pkix.invalid_domain_name_syntax", "ERROR")
    ]
