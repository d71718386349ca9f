"""Registrar races the HTTP tests cannot time: a revocation while a renewal is being recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA, IssuedName
from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.errors import CertificateRevoked, NotAllowed, TooManyRequests
from custom_components.est_pairing.est.fingerprints import certificate_fingerprint, public_key_fingerprint
from custom_components.est_pairing.est.issuance import IssuancePolicy
from custom_components.est_pairing.est.ledger import Ledger
from custom_components.est_pairing.est.policy import AwaitingOwner, EnrollmentPolicy
from custom_components.est_pairing.est.registrar import Issued, IssuedWithKey, Peer, Registrar
from custom_components.est_pairing.est.storage import Event, JournalFile
from est_tools.appliance.client import build_csr, renewal_csr


class GatedJournal(JournalFile):
    """A journal whose appends wait at a gate the test opens."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    async def append(self, events: Sequence[Event]) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        await super().append(events)


async def test_a_renewal_recorded_during_revocation_is_revoked_too(tmp_path: Path, ca: HouseholdCA) -> None:
    journal = GatedJournal(tmp_path / "ledger.jsonl")
    ledger = Ledger(journal)
    policy = EnrollmentPolicy()
    await policy.preregister("oven", "123456")
    registrar = Registrar(ca=ca, ledger=ledger, policy=policy, issuance=IssuancePolicy())
    key = ec.generate_private_key(ec.SECP256R1())
    first = await registrar.enroll(
        Peer("127.0.0.1", BasicCredentials("oven", "123456")), build_csr(key, "oven")
    )
    assert isinstance(first, Issued)

    journal.gate.clear()
    new_key = ec.generate_private_key(ec.SECP256R1())
    renewal = asyncio.create_task(
        registrar.reenroll(
            Peer("127.0.0.1", certificate_chain=(first.certificate,)), renewal_csr(new_key, first.certificate)
        )
    )
    await journal.waiting.wait()  # the renewal's certificate is signed and being recorded
    revocation = asyncio.create_task(registrar.revoke_appliance("oven"))
    await asyncio.sleep(0)
    journal.gate.set()

    with pytest.raises(CertificateRevoked, match="while this request was handled"):
        await renewal
    await revocation
    records = ledger.for_appliance("oven")
    assert len(records) == 2
    assert all(record.revoked for record in records)
    with pytest.raises(CertificateRevoked):
        policy.check_key(records[1].key_fingerprint)


NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def manufacturer() -> HouseholdCA:
    """A manufacturer CA that factory certificates chain to."""
    return HouseholdCA.create("Acme Factory")


@pytest.fixture
async def registrar(tmp_path: Path, ca: HouseholdCA, manufacturer: HouseholdCA) -> Registrar:
    policy = EnrollmentPolicy()
    await policy.preregister("oven", "123456")
    return Registrar(
        ca=ca,
        ledger=Ledger(JournalFile(tmp_path / "ledger.jsonl")),
        policy=policy,
        issuance=IssuancePolicy(),
        manufacturer_cas=[manufacturer.certificate],
    )


def factory_certificate(
    issuer: HouseholdCA, key: ec.EllipticCurvePrivateKey, *, days: int = 30, start: int = -1
) -> x509.Certificate:
    return issuer.issue_appliance_certificate(
        public_key=key.public_key(),
        name=IssuedName("SN-7"),
        server_auth=False,
        serial_number=x509.random_serial_number(),
        not_before=NOW + timedelta(days=start),
        not_after=NOW + timedelta(days=start + days),
        crl_url=None,
    )


async def test_factory_certificate_claims_need_a_configured_manufacturer(
    registrar: Registrar, manufacturer: HouseholdCA
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, "SN-7")
    good = factory_certificate(manufacturer, key)
    waiting = await registrar.enroll(
        Peer("10.0.0.7", certificate_chain=(good, manufacturer.certificate)), csr
    )
    assert isinstance(waiting, AwaitingOwner)
    assert waiting.pending.factory_fingerprint == certificate_fingerprint(good)
    assert waiting.pending.appliance_id == "SN-7"

    stranger = HouseholdCA.create("Stranger")
    foreign = factory_certificate(stranger, key)
    with pytest.raises(NotAllowed, match="not from a configured manufacturer"):
        await registrar.enroll(Peer("10.0.0.7", certificate_chain=(foreign, stranger.certificate)), csr)
    expired = factory_certificate(manufacturer, key, days=1, start=-10)
    with pytest.raises(NotAllowed, match="not valid now"):
        await registrar.enroll(Peer("10.0.0.7", certificate_chain=(expired, manufacturer.certificate)), csr)


async def test_reenroll_needs_a_household_certificate_from_the_ledger(
    registrar: Registrar, ca: HouseholdCA, manufacturer: HouseholdCA
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    factory = factory_certificate(manufacturer, key)
    with pytest.raises(NotAllowed, match="issued by this household CA"):
        await registrar.reenroll(Peer("10.0.0.7", certificate_chain=(factory,)), renewal_csr(key, factory))
    unrecorded = factory_certificate(ca, key)  # signed by the CA, but never recorded
    with pytest.raises(NotAllowed, match="not in this CA's ledger"):
        await registrar.reenroll(
            Peer("10.0.0.7", certificate_chain=(unrecorded,)), renewal_csr(key, unrecorded)
        )


async def test_serverkeygen_for_an_unknown_appliance_waits_for_the_owner(registrar: Registrar) -> None:
    outcome = await registrar.serverkeygen(
        Peer("10.0.0.7", BasicCredentials("fridge", "424242")),
        build_csr(ec.generate_private_key(ec.SECP256R1()), "fridge"),
    )
    assert isinstance(outcome, AwaitingOwner)
    assert len(registrar.ledger) == 0


async def test_revoking_after_serverkeygen_blocks_the_request_key_too(registrar: Registrar) -> None:
    """The certificate is for the server's key; a replay of the approved request must not pair again."""
    fridge = Peer("10.0.0.7", BasicCredentials("fridge", "424242"))
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "fridge")
    waiting = await registrar.serverkeygen(fridge, csr)
    assert isinstance(waiting, AwaitingOwner)
    await registrar.policy.approve(waiting.pending.request_id, pin="424242")
    assert isinstance(await registrar.serverkeygen(fridge, csr), IssuedWithKey)
    await registrar.revoke_appliance("fridge")
    for operation in (registrar.serverkeygen, registrar.enroll):
        with pytest.raises(CertificateRevoked):
            await operation(fridge, csr)
    assert registrar.policy.pending_requests() == []


async def test_the_ledger_records_the_key_each_certificate_was_issued_for(registrar: Registrar) -> None:
    """The registrar gives the ledger the key fingerprint it approved; the ledger need not re-read it."""
    oven = Peer("10.0.0.7", BasicCredentials("oven", "123456"))
    key = ec.generate_private_key(ec.SECP256R1())
    enrolled = await registrar.enroll(oven, build_csr(key, "oven"))
    assert isinstance(enrolled, Issued)
    renewed = await registrar.reenroll(
        Peer("10.0.0.7", certificate_chain=(enrolled.certificate,)),
        renewal_csr(ec.generate_private_key(ec.SECP256R1()), enrolled.certificate),
    )
    generated = await registrar.serverkeygen(oven, build_csr(key, "oven"))
    assert isinstance(generated, IssuedWithKey)
    issued = [enrolled, renewed, generated.issued]
    assert len({i.record.key_fingerprint for i in issued}) == 3  # the server's key, not the request's
    for each in issued:
        assert each.record.key_fingerprint == public_key_fingerprint(each.certificate.public_key())
        assert registrar.ledger.get(each.certificate.serial_number) == each.record


async def test_a_retried_enrollment_gets_the_same_certificate_not_another(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    """A lost answer, a retry loop or a replayed copy of an approved request must not fill the ledger."""
    clock = [NOW]
    policy = EnrollmentPolicy()
    await policy.preregister("oven", "123456")
    registrar = Registrar(
        ca=ca,
        ledger=Ledger(JournalFile(tmp_path / "ledger.jsonl")),
        policy=policy,
        issuance=IssuancePolicy(validity_days=30),
        now=lambda: clock[0],
    )
    oven = Peer("10.0.0.7", BasicCredentials("oven", "123456"))
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "oven")
    first = await registrar.enroll(oven, csr)
    assert isinstance(first, Issued)
    clock[0] = NOW + timedelta(days=14)
    again = await registrar.enroll(oven, csr)
    assert isinstance(again, Issued)
    assert again.certificate == first.certificate
    assert len(registrar.ledger) == 1

    clock[0] = NOW + timedelta(days=15)  # the first certificate is half-way through its life: a new one
    later = await registrar.enroll(oven, csr)
    assert isinstance(later, Issued)
    assert later.certificate.serial_number != first.certificate.serial_number
    assert later.certificate.not_valid_after_utc > first.certificate.not_valid_after_utc
    await registrar.ledger.revoke(
        later.certificate.serial_number, reason=x509.ReasonFlags.superseded, when=clock[0]
    )
    after_revocation = await registrar.enroll(oven, csr)
    assert isinstance(after_revocation, Issued)
    assert after_revocation.certificate.serial_number != later.certificate.serial_number
    other_key_pair = ec.generate_private_key(ec.SECP256R1())
    waiting = await registrar.enroll(oven, build_csr(other_key_pair, "oven"))
    assert isinstance(waiting, AwaitingOwner)  # the pre-registration was used: the owner approves it
    await policy.approve(waiting.pending.request_id, pin="123456")
    other_key = await registrar.enroll(oven, build_csr(other_key_pair, "oven"))
    assert isinstance(other_key, Issued)
    assert other_key.certificate.serial_number != after_revocation.certificate.serial_number
    assert len(registrar.ledger) == 4

    holder = Peer("10.0.0.7", certificate_chain=(other_key.certificate,))
    renewal = renewal_csr(other_key_pair, other_key.certificate)
    same_key = await registrar.reenroll(holder, renewal)
    assert same_key.certificate != other_key.certificate  # never the certificate being renewed
    assert (await registrar.reenroll(holder, renewal)).certificate == same_key.certificate
    assert len(registrar.ledger) == 5


async def test_every_crl_with_new_dates_has_a_larger_crl_number(tmp_path: Path, ca: HouseholdCA) -> None:
    """RFC 5280 §5.2.3: a re-signed CRL (half-way, after a restart, a revocation) supersedes by number."""
    clock = [NOW]
    policy = EnrollmentPolicy()
    await policy.preregister("oven", "123456")

    async def registrar() -> Registrar:  # a fresh one is a restart: the ledger is read again
        ledger = Ledger(JournalFile(tmp_path / "ledger.jsonl"))
        await ledger.load()
        return Registrar(ca=ca, ledger=ledger, policy=policy, issuance=IssuancePolicy(), now=lambda: clock[0])

    def crl_of(running: Registrar) -> x509.CertificateRevocationList:
        return x509.load_der_x509_crl(running.crl())

    def number(crl: x509.CertificateRevocationList) -> int:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    running = await registrar()
    first = crl_of(running)
    assert crl_of(running).last_update_utc == first.last_update_utc  # unchanged: served again as it was
    clock[0] += timedelta(days=4)  # past half its validity: re-signed
    resigned = crl_of(running)
    assert resigned.last_update_utc > first.last_update_utc
    enrolled = await running.enroll(
        Peer("127.0.0.1", BasicCredentials("oven", "123456")),
        build_csr(ec.generate_private_key(ec.SECP256R1()), "oven"),
    )
    assert isinstance(enrolled, Issued)
    await running.revoke_appliance("oven")
    revoked = crl_of(running)  # at the same instant: new entries, so a new number all the same
    clock[0] += timedelta(minutes=1)
    restarted = crl_of(await registrar())
    assert len(restarted) == 1
    numbers = [number(crl) for crl in (first, resigned, revoked, restarted)]
    assert numbers == sorted(set(numbers)), numbers
    assert all(n.bit_length() <= 159 for n in numbers)  # RFC 5280: at most 20 octets


async def test_a_certificate_that_serves_tls_is_valid_825_days_at_most(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    """Apple platforms refuse a TLS server certificate valid longer, even from an installed CA."""
    policy = EnrollmentPolicy(auto_approve=True)  # two keys of one appliance, each approved
    registrar = Registrar(
        ca=ca,
        ledger=Ledger(JournalFile(tmp_path / "ledger.jsonl")),
        policy=policy,
        issuance=IssuancePolicy(validity_days=3650),
        now=lambda: NOW,
    )
    oven = Peer("10.0.0.7", BasicCredentials("oven", "123456"))
    named_server: list[x509.ExtensionType] = [
        x509.SubjectAlternativeName([x509.DNSName("oven.local")]),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    ]
    lifetimes = []
    for extensions in (named_server, []):  # without a name, clientAuth only
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oven")])
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        issued = await registrar.enroll(
            oven, builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        )
        assert isinstance(issued, Issued)
        certificate = issued.certificate
        serves_tls = (
            ExtendedKeyUsageOID.SERVER_AUTH
            in certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        )
        lifetimes.append((serves_tls, certificate.not_valid_after_utc - NOW.replace(microsecond=0)))
    assert [serves for serves, _ in lifetimes] == [True, False]
    assert timedelta(days=824) < lifetimes[0][1] <= timedelta(days=825)
    assert timedelta(days=3649) < lifetimes[1][1] <= timedelta(days=3650)


# --- bounded certificates per appliance -------------------------------------------------------------


class Hub:
    """A registrar over a ledger file, with a clock the test moves; ``restart`` reads the ledger again."""

    def __init__(self, tmp_path: Path, ca: HouseholdCA) -> None:
        self.clock = [NOW]
        self.path = tmp_path / "ledger.jsonl"
        self.ca = ca
        self.policy = EnrollmentPolicy()
        self.registrar = Registrar(
            ca=ca,
            ledger=Ledger(JournalFile(self.path)),
            policy=self.policy,
            issuance=IssuancePolicy(validity_days=100),
            now=lambda: self.clock[0],
        )

    @classmethod
    async def with_oven(cls, tmp_path: Path, ca: HouseholdCA) -> Hub:
        """A hub where ``oven`` is pre-registered."""
        hub = cls(tmp_path, ca)
        await hub.policy.preregister("oven", "123456")
        return hub

    @property
    def ledger(self) -> Ledger:
        return self.registrar.ledger

    async def restart(self) -> None:
        await self.ledger.wait_idle()
        ledger = Ledger(JournalFile(self.path))
        await ledger.load()
        self.registrar = Registrar(
            ca=self.ca,
            ledger=ledger,
            policy=self.policy,
            issuance=IssuancePolicy(validity_days=100),
            now=lambda: self.clock[0],
        )

    async def enroll(self, private_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        issued = await self.registrar.enroll(OVEN, build_csr(private_key, "oven"))
        assert isinstance(issued, Issued)
        return issued.certificate

    async def renew(self, current: x509.Certificate, new_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
        holder = Peer("10.0.0.7", certificate_chain=(current,))
        return (await self.registrar.reenroll(holder, renewal_csr(new_key, current))).certificate

    def valid(self) -> list[int]:
        """Serials of oven's unrevoked, unexpired certificates."""
        now = self.clock[0].timestamp()
        return [
            r.serial_number for r in self.ledger.for_appliance("oven") if not r.revoked and r.not_after > now
        ]

    def crl_reasons(self) -> dict[int, x509.ReasonFlags]:
        crl = x509.load_der_x509_crl(self.registrar.crl())
        return {
            entry.serial_number: entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            for entry in crl
        }


OVEN = Peer("10.0.0.7", BasicCredentials("oven", "123456"))


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


async def test_serverkeygen_repeats_get_the_same_key_and_certificate(tmp_path: Path, ca: HouseholdCA) -> None:
    """The same request 300 times, in turn and at once, is one key and one certificate, not 300."""
    hub = await Hub.with_oven(tmp_path, ca)
    csr = build_csr(new_key(), "oven")
    first = await hub.registrar.serverkeygen(OVEN, csr)
    assert isinstance(first, IssuedWithKey)
    repeats = [await hub.registrar.serverkeygen(OVEN, csr) for _ in range(150)]
    repeats += await asyncio.gather(*(hub.registrar.serverkeygen(OVEN, csr) for _ in range(150)))
    for repeat in repeats:
        assert isinstance(repeat, IssuedWithKey)
        assert repeat.issued.certificate == first.issued.certificate
        assert repeat.private_key_der() == first.private_key_der()
    assert len(hub.ledger) == 1


async def test_the_same_request_at_once_is_signed_once(tmp_path: Path, ca: HouseholdCA) -> None:
    hub = await Hub.with_oven(tmp_path, ca)
    csr = build_csr(new_key(), "oven")
    answers = await asyncio.gather(*(hub.registrar.enroll(OVEN, csr) for _ in range(20)))
    assert len({a.certificate.serial_number for a in answers if isinstance(a, Issued)}) == 1
    assert len(hub.ledger) == 1


async def test_a_certificate_renews_once_and_a_renewed_one_not_at_once(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    hub = await Hub.with_oven(tmp_path, ca)
    first = await hub.enroll(new_key())
    second_key = new_key()
    second = await hub.renew(first, second_key)  # right after enrolling: allowed
    with pytest.raises(NotAllowed, match="renewed already: renew with the newer certificate"):
        await hub.renew(first, new_key())  # a copy of the first certificate cannot start a chain
    assert await hub.renew(first, second_key) == second  # the same renewal asked again: its answer
    assert hub.valid() == [first.serial_number, second.serial_number]  # both, while it switches over

    with pytest.raises(TooManyRequests, match="renews from") as early:
        await hub.renew(second, new_key())
    quarter = (second.not_valid_after_utc - second.not_valid_before_utc) / 4
    assert early.value.retry_after == pytest.approx(quarter.total_seconds() - 300, abs=2)  # backdated 5 min
    hub.clock[0] += quarter
    third = await hub.renew(second, new_key())
    assert hub.valid() == [second.serial_number, third.serial_number]
    assert hub.crl_reasons() == {first.serial_number: x509.ReasonFlags.superseded}
    assert len(hub.ledger) == 3
    with pytest.raises(CertificateRevoked, match="revoked: newer ones superseded it"):
        await hub.renew(first, second_key)  # an appliance that lost both newer ones hears why


async def test_a_hundred_renewals_leave_two_valid_certificates(tmp_path: Path, ca: HouseholdCA) -> None:
    """Renewing with a fresh key each time: every certificate but the last two is superseded."""
    hub = await Hub.with_oven(tmp_path, ca)
    current = await hub.enroll(new_key())
    refused = 0
    for _ in range(100):
        try:
            current = await hub.renew(current, new_key())
        except TooManyRequests as early:
            refused += 1
            hub.clock[0] += timedelta(seconds=early.retry_after)
        assert len(hub.valid()) <= 2
    assert refused >= 49  # every renewal of a renewed certificate waited
    records = hub.ledger.for_appliance("oven")
    assert len(records) <= 52
    assert all(r.revocation_reason == "superseded" for r in records if r.revoked)
    assert len(hub.crl_reasons()) == len(records) - 2


async def test_a_repeat_later_in_life_supersedes_the_oldest(tmp_path: Path, ca: HouseholdCA) -> None:
    """The bound holds for enrollment too: a fresh certificate for the same key pushes the oldest out."""
    hub = await Hub.with_oven(tmp_path, ca)
    key = new_key()
    first = await hub.enroll(key)
    second = await hub.renew(first, key)  # the same key, renewed at once (as curl users do)
    assert await hub.enroll(key) == second  # the newest answer for that key, while it is young
    hub.clock[0] += timedelta(days=60)  # past half of its life: the appliance wants a fresh one
    third = await hub.enroll(key)
    assert third not in (first, second)
    assert hub.valid() == [second.serial_number, third.serial_number]
    assert hub.crl_reasons() == {first.serial_number: x509.ReasonFlags.superseded}


async def test_a_lost_renewal_answer_is_recovered_after_a_restart(tmp_path: Path, ca: HouseholdCA) -> None:
    hub = await Hub.with_oven(tmp_path, ca)
    first = await hub.enroll(new_key())
    second_key = new_key()
    lost = await hub.renew(first, second_key)
    await hub.restart()  # the answers given are forgotten; the ledger knows first was renewed
    again = await hub.renew(first, second_key)
    assert again != lost and again.public_key() == second_key.public_key()
    assert await hub.renew(first, second_key) == again
    assert hub.valid() == [first.serial_number, again.serial_number]  # the lost one is superseded
    assert hub.crl_reasons() == {lost.serial_number: x509.ReasonFlags.superseded}
    with pytest.raises(NotAllowed, match="renewed already"):
        await hub.renew(first, new_key())
    await hub.ledger.revoke(again.serial_number, reason=x509.ReasonFlags.key_compromise, when=hub.clock[0])
    with pytest.raises(NotAllowed, match="renewed already"):  # its renewal revoked: no second successor
        await hub.renew(first, second_key)


async def test_renewals_of_one_certificate_at_once_make_one_successor(
    tmp_path: Path, ca: HouseholdCA
) -> None:
    hub = await Hub.with_oven(tmp_path, ca)
    first = await hub.enroll(new_key())
    outcomes = await asyncio.gather(*(hub.renew(first, new_key()) for _ in range(5)), return_exceptions=True)
    assert len([o for o in outcomes if isinstance(o, x509.Certificate)]) == 1
    assert all(isinstance(o, NotAllowed) for o in outcomes if not isinstance(o, x509.Certificate))
    assert len(hub.ledger) == 2
