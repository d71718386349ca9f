"""Who may enroll: pending requests, the owner's decisions, and wrong-secret throttling."""

from __future__ import annotations

import asyncio
import json

from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.csr import ApplianceDetails, CertificateRequest, inspect_request
from custom_components.est_pairing.est.errors import (
    AuthenticationRequired,
    Busy,
    CertificateRevoked,
    ExchangeGone,
    LockedOut,
    MalformedRequest,
    NotAllowed,
    PendingRequestGone,
    ProofMismatch,
    ProtocolError,
    TooManyRequests,
    WrongPin,
)
from custom_components.est_pairing.est.limits import (
    FREE_ATTEMPTS,
    LOCKOUT_BASE,
    LOCKOUT_MAX,
    OWNER_PIN_ATTEMPTS,
    PENDING_IDLE_TTL,
    PENDING_MAX,
    PENDING_MAX_PER_ADDRESS,
    PENDING_MAX_PER_IDENTITY,
)
from custom_components.est_pairing.est.policy import (
    Approved,
    AwaitingOwner,
    Claim,
    Confirmation,
    CredentialKind,
    Decision,
    EnrollmentPolicy,
    PendingEnrollment,
    PinGiven,
    PolicyListener,
    Registration,
    digest_secret,
    secret_matches,
)
from custom_components.est_pairing.est.status import status_for
from custom_components.est_pairing.est.throttle import MAX_TRACKED, SecretThrottle
from custom_components.est_pairing.est.verifiers import PinVerifier, ThreadedSrp
from est_tools.appliance.client import build_csr


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def request(appliance_id: str = "oven") -> CertificateRequest:
    return inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), appliance_id))


def claim(appliance_id: str = "oven", secret: str = "123456") -> Claim:
    return Claim.from_basic(BasicCredentials(appliance_id, secret))


async def ask(
    policy: EnrollmentPolicy, claim: Claim, request: CertificateRequest, address: str | None
) -> Decision:
    """A request through the policy as the registrar makes it: authenticate, then decide."""
    await policy.authenticate(claim, request)
    return await policy.decide(claim, request, address)


class Heard(PolicyListener):
    """What the policy told the application embedding it; refuses the identities in ``refused``."""

    def __init__(self) -> None:
        self.added: list[PendingEnrollment] = []
        self.removed: list[PendingEnrollment] = []
        self.changes = 0
        self.refused: dict[str, str] = {}

    def pending_added(self, pending: PendingEnrollment) -> None:
        self.added.append(pending)

    def pending_removed(self, pending: PendingEnrollment) -> None:
        self.removed.append(pending)

    def approvals_changed(self) -> None:
        self.changes += 1

    def refusal(self, identity: str) -> str | None:
        return self.refused.get(identity)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
def policy(clock: Clock, heard: Heard) -> EnrollmentPolicy:
    return EnrollmentPolicy(clock=clock, listener=heard)


def test_claims_from_credentials() -> None:
    assert claim().kind is CredentialKind.PIN
    assert claim(secret="").kind is CredentialKind.FINGERPRINT
    assert "123456" not in repr(claim())
    with pytest.raises(MalformedRequest, match="appliance id"):
        claim("../etc/passwd")
    with pytest.raises(MalformedRequest, match="longer"):
        claim(secret="x" * 500)


async def test_unknown_appliance_waits_and_the_owner_is_told_once(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    seen = heard.added
    oven = request()
    first = await ask(policy, claim(), oven, "10.0.0.5")
    assert isinstance(first, AwaitingOwner) and first.new
    second = await ask(policy, claim(), oven, "10.0.0.6")
    assert isinstance(second, AwaitingOwner) and not second.new
    assert len(seen) == 1
    assert seen[0].address == "10.0.0.6"
    assert seen[0].key_fingerprint == oven.key_fingerprint


async def test_approval_with_the_right_pin_then_issue(policy: EnrollmentPolicy) -> None:
    oven = request()
    pending = await ask(policy, claim(), oven, None)
    assert isinstance(pending, AwaitingOwner)
    registration = await policy.approve(pending.pending.request_id, pin=" 123456 ")
    assert isinstance(registration, Registration)
    assert registration.keys == {oven.key_fingerprint}
    assert await ask(policy, claim(), oven, None) == Approved("oven")
    with pytest.raises(AuthenticationRequired):
        await ask(policy, claim(secret="654321"), oven, None)
    assert policy.pending_requests() == []


async def test_wrong_pins_typed_by_the_owner_stop_the_flow_and_lock(policy: EnrollmentPolicy) -> None:
    pending = await ask(policy, claim(), request(), None)
    assert isinstance(pending, AwaitingOwner)
    request_id = pending.pending.request_id
    for attempts_left in range(OWNER_PIN_ATTEMPTS - 1, 0, -1):
        with pytest.raises(WrongPin) as wrong:
            await policy.approve(request_id, pin="000000")
        assert wrong.value.attempts_left == attempts_left
    with pytest.raises(LockedOut):
        await policy.approve(request_id, pin="000000")
    with pytest.raises(PendingRequestGone):
        await policy.approve(request_id, pin="123456")
    with pytest.raises(LockedOut):
        await ask(policy, claim(), request(), None)


async def test_pin_approval_needs_a_pin_from_the_appliance(policy: EnrollmentPolicy) -> None:
    pending = await ask(policy, claim(secret=""), request(), None)
    assert isinstance(pending, AwaitingOwner)
    with pytest.raises(NotAllowed, match="compare the fingerprints"):
        await policy.approve(pending.pending.request_id, pin="123456")
    await policy.approve(pending.pending.request_id)  # fingerprints confirmed
    assert policy.registration("oven") is not None


async def test_rejection_is_remembered_for_that_key(policy: EnrollmentPolicy) -> None:
    oven = request()
    pending = await ask(policy, claim(), oven, None)
    assert isinstance(pending, AwaitingOwner)
    policy.reject(pending.pending.request_id)
    with pytest.raises(NotAllowed, match="rejected"):
        await ask(policy, claim(), oven, None)
    assert isinstance(await ask(policy, claim(), request(), None), AwaitingOwner)


async def test_a_preregistration_admits_the_first_key_with_the_secret_only(policy: EnrollmentPolicy) -> None:
    await policy.preregister("oven", "123456")
    with pytest.raises(AuthenticationRequired):
        await ask(policy, claim(secret="1"), request(), None)
    first = request()
    assert await ask(policy, claim(), first, None) == Approved("oven")
    assert await ask(policy, claim(), first, None) == Approved("oven")  # its retry
    registration = policy.registration("oven")
    assert registration is not None and not registration.preregistered
    assert registration.keys == {first.key_fingerprint}
    assert isinstance(await ask(policy, claim(), request(), None), AwaitingOwner)  # another key: the owner
    with pytest.raises(NotAllowed, match="paired already"):
        await policy.preregister("oven", "123456")  # arming it again would admit that key unattended
    with pytest.raises(MalformedRequest):
        await policy.preregister("oven", "")


@pytest.mark.parametrize("appliance_id", ["oven.local", "oven.", "login.microsoftonline.com"])
async def test_a_new_id_is_one_dns_label(policy: EnrollmentPolicy, appliance_id: str) -> None:
    """Pre-registered (the owner, --user) or asked for by a request: the same rule, the same reason."""
    with pytest.raises(MalformedRequest, match=r"with no '\.'"):
        await policy.preregister(appliance_id, "123456")
    with pytest.raises(MalformedRequest, match=r"with no '\.'"):
        await ask(policy, claim(appliance_id), request(appliance_id), None)
    assert policy.registrations() == [] and policy.pending_requests() == []


async def test_preregistering_an_appliance_that_waits_withdraws_its_request(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    """Its card under Discovered would otherwise outlive the enrollment the registration allows."""
    oven = request()
    waiting = await ask(policy, claim(), oven, None)
    other = await ask(policy, claim("fridge"), request("fridge"), None)
    assert isinstance(waiting, AwaitingOwner) and isinstance(other, AwaitingOwner)
    await policy.preregister("oven", "123456")
    assert [pending.request_id for pending in heard.removed] == [waiting.pending.request_id]
    assert [p.appliance_id for p in policy.pending_requests()] == ["fridge"]
    assert await ask(policy, claim(), oven, None) == Approved("oven")  # its retry, with the PIN


async def test_a_preregistration_learns_what_the_appliance_says_about_itself(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    await policy.preregister("oven", "123456", ApplianceDetails(name="Kitchen oven"))  # what the owner typed
    heard.changes = 0
    said = ApplianceDetails(name="OV oven", model="OV-200", manufacturer="Acme", serial_number="SN-42")
    oven = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", details=said))
    assert await ask(policy, claim(), oven, None) == Approved("oven")
    registration = policy.registration("oven")
    assert registration is not None
    assert registration.details == ApplianceDetails("Kitchen oven", "OV-200", "Acme", "SN-42")  # owner's name
    assert heard.changes == 1
    assert await ask(policy, claim(), oven, None) == Approved("oven")  # its retry: no save
    assert policy.registration("oven") == registration
    assert heard.changes == 1


async def test_revoked_keys_never_enroll_again(policy: EnrollmentPolicy) -> None:
    await policy.preregister("oven", "123456")
    oven = request()
    policy.remove("oven", [oven.key_fingerprint])
    with pytest.raises(CertificateRevoked):
        await ask(policy, claim(), oven, None)
    assert isinstance(await ask(policy, claim(), request(), None), AwaitingOwner)


async def test_only_an_authenticated_claim_learns_that_its_key_was_revoked(policy: EnrollmentPolicy) -> None:
    """Pre-registered again after a revocation: the old key with a wrong secret is a 401 like any
    wrong secret, not a 403 telling a guesser which keys were revoked."""
    await policy.preregister("oven", "123456")
    oven = request()
    policy.remove("oven", [oven.key_fingerprint])
    await policy.preregister("oven", "654321")
    with pytest.raises(AuthenticationRequired, match="wrong secret"):
        await ask(policy, claim(secret="123456"), oven, None)
    with pytest.raises(CertificateRevoked):
        await ask(policy, claim(secret="654321"), oven, None)


async def test_pending_requests_are_bounded(policy: EnrollmentPolicy) -> None:
    for _ in range(PENDING_MAX_PER_IDENTITY):
        await ask(policy, claim(), request(), None)
    with pytest.raises(TooManyRequests, match="this appliance id"):
        await ask(policy, claim(), request(), None)
    for index in range(PENDING_MAX_PER_ADDRESS):
        await ask(policy, claim(f"a{index}"), request(f"a{index}"), "10.0.0.9")
    with pytest.raises(TooManyRequests, match="this address"):
        await ask(policy, claim("b"), request("b"), "10.0.0.9")
    for index in range(PENDING_MAX - len(policy.pending_requests())):
        await ask(policy, claim(f"c{index}"), request(f"c{index}"), f"10.0.1.{index}")
    with pytest.raises(Busy, match="waiting for the owner"):  # overall: the server's bound, 503
        await ask(policy, claim("d"), request("d"), "10.0.2.1")


async def test_pending_requests_expire_when_the_appliance_stops_asking(
    policy: EnrollmentPolicy, clock: Clock, heard: Heard
) -> None:
    pending = await ask(policy, claim(), request(), None)
    assert isinstance(pending, AwaitingOwner)
    clock.now += PENDING_IDLE_TTL + 1
    assert policy.pending_requests() == []
    with pytest.raises(PendingRequestGone):
        policy.review(pending.pending.request_id)
    assert heard.removed == []  # reading changed nothing: expiry is a step of its own
    policy.expire_pending()
    assert heard.removed == [pending.pending]
    with pytest.raises(PendingRequestGone):
        await policy.approve(pending.pending.request_id)


async def test_a_decision_drops_expired_requests(
    policy: EnrollmentPolicy, clock: Clock, heard: Heard
) -> None:
    """Approving one that expired meanwhile says it is gone, and the application hears it went."""
    pending = await ask(policy, claim(), request(), None)
    assert isinstance(pending, AwaitingOwner)
    clock.now += PENDING_IDLE_TTL + 1
    with pytest.raises(PendingRequestGone):
        await policy.approve(pending.pending.request_id, pin="123456")
    assert heard.removed == [pending.pending]


async def test_lockout_grows_and_ends_after_its_window(policy: EnrollmentPolicy, clock: Clock) -> None:
    await policy.preregister("oven", "123456")
    oven = request()
    for _ in range(FREE_ATTEMPTS):
        with pytest.raises(AuthenticationRequired):
            await ask(policy, claim(secret="000000"), oven, None)
    with pytest.raises(LockedOut) as locked:
        await ask(policy, claim(), oven, None)
    assert locked.value.retry_after == LOCKOUT_BASE
    for _ in range(10_000):  # hammering while locked is refused without extending the lockout
        with pytest.raises(LockedOut):
            await ask(policy, claim(secret="000000"), oven, None)
    clock.now += LOCKOUT_BASE + 1
    with pytest.raises(AuthenticationRequired):
        await ask(policy, claim(secret="000001"), oven, None)
    with pytest.raises(LockedOut) as longer:
        await ask(policy, claim(), oven, None)
    assert longer.value.retry_after == 2 * LOCKOUT_BASE
    clock.now += 2 * LOCKOUT_BASE + 1
    assert await ask(policy, claim(), oven, None) == Approved("oven")


async def test_a_million_guesses_take_more_than_a_century(policy: EnrollmentPolicy, clock: Clock) -> None:
    await policy.preregister("oven", "123456")
    oven = request()
    guesses, start = 0, clock.now
    while guesses < 200:
        try:
            await ask(policy, claim(secret=f"{guesses:06d}x"), oven, None)
        except LockedOut as locked:
            clock.now += locked.retry_after
        except AuthenticationRequired:
            guesses += 1
    rate = guesses / (clock.now - start)  # guesses per second once the lockout has grown
    assert 1_000_000 / rate / (365 * 86400) > 100
    assert clock.now - start >= (200 - FREE_ATTEMPTS - 10) * LOCKOUT_MAX


async def test_global_ceiling_on_wrong_secrets(policy: EnrollmentPolicy) -> None:
    for index in range(60):
        await policy.preregister(f"a{index}", "123456")
        with pytest.raises(AuthenticationRequired):
            await ask(policy, claim(f"a{index}", "000000"), request(f"a{index}"), None)
    await policy.preregister("oven", "123456")
    with pytest.raises(LockedOut, match="on this server"):
        await ask(policy, claim(), request(), None)


async def test_the_global_ceiling_does_not_keep_the_owner_from_approving_by_pin(
    policy: EnrollmentPolicy,
) -> None:
    fridge = request("fridge")
    pending = await ask(policy, claim("fridge", "777777"), fridge, None)
    assert isinstance(pending, AwaitingOwner)
    for index in range(60):  # guessers on the LAN reach the ceiling meanwhile
        await policy.preregister(f"a{index}", "123456")
        with pytest.raises(AuthenticationRequired):
            await ask(policy, claim(f"a{index}", "000000"), request(f"a{index}"), None)
    with pytest.raises(LockedOut, match="on this server"):
        await ask(policy, claim("fridge", "777777"), fridge, None)
    registration = await policy.approve(pending.pending.request_id, pin="777777")
    assert isinstance(registration, Registration)
    assert registration.keys == {fridge.key_fingerprint}


async def test_export_and_restore_keep_decisions_but_not_secrets(policy: EnrollmentPolicy) -> None:
    await policy.preregister("oven", "123456")
    oven = request("fridge")
    pending = await ask(policy, claim("fridge", "777777"), oven, None)
    assert isinstance(pending, AwaitingOwner)
    policy.reject(pending.pending.request_id)
    state = policy.export()
    assert "123456" not in str(state) and "777777" not in str(state)
    restored = EnrollmentPolicy()
    restored.restore(state)
    assert await ask(restored, claim(), request(), None) == Approved("oven")
    with pytest.raises(NotAllowed):
        await ask(restored, claim("fridge", "777777"), oven, None)


async def test_a_flood_of_made_up_identities_keeps_a_registered_appliances_wrong_pins(
    policy: EnrollmentPolicy, clock: Clock
) -> None:
    """Filling the throttle's table must not wipe the count of the PIN someone is guessing."""
    await policy.preregister("oven", "482913")
    for _ in range(FREE_ATTEMPTS - 1):
        policy.throttle.failure("id:oven")
    for index in range(MAX_TRACKED + 10):  # ids nobody registered, one a second (under the ceiling)
        policy.throttle.failure(f"id:a{index}")
        clock.now += 1.0
    assert len(policy.throttle) <= MAX_TRACKED + 1  # still bounded: only oven is kept beyond it
    policy.throttle.failure("id:oven")  # the last free attempt
    with pytest.raises(LockedOut, match="for this appliance"):
        policy.throttle.check("id:oven", server_wide=False)


def test_secret_digests() -> None:
    digest = digest_secret("123456")
    assert secret_matches("123456", digest)
    assert not secret_matches("123457", digest)
    assert digest != digest_secret("123456")  # salted
    assert secret_matches("", None)
    assert not secret_matches("x", None)


def test_the_throttle_forgets_quiet_identities_beyond_its_bound(clock: Clock) -> None:
    throttle = SecretThrottle(clock)
    for index in range(MAX_TRACKED + 10):
        throttle.failure(f"id:a{index}")
        clock.now += 1.0  # one a second: the global ceiling is never reached
    assert len(throttle) <= MAX_TRACKED
    throttle.failure("id:oven")
    for _ in range(FREE_ATTEMPTS):
        throttle.failure("id:oven")
    with pytest.raises(LockedOut):
        throttle.check("id:oven")  # a locked identity is never the one forgotten
    until = throttle.locked_until("id:oven")
    assert until is not None and until > clock.now
    assert throttle.locked_until("id:stranger") is None
    clock.now = until
    assert throttle.locked_until("id:oven") is None


def test_errors_without_a_status_are_500() -> None:
    assert status_for(ProtocolError("x")) == 500
    assert status_for(WrongPin("x", 1)) == 401


async def test_the_embedding_application_refuses_and_withdraws_without_deciding(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    oven = request()
    pending = await ask(policy, claim(), oven, None)
    assert isinstance(pending, AwaitingOwner)
    policy.withdraw(pending.pending.request_id)
    assert policy.pending_requests() == []
    heard.refused["id:oven"] = "the owner ignored it"
    with pytest.raises(NotAllowed, match="ignored it"):
        await ask(policy, claim(), oven, None)
    assert isinstance(await ask(policy, claim("fridge"), request("fridge"), None), AwaitingOwner)
    heard.refused.clear()
    again = await ask(policy, claim(), oven, None)  # withdrawn is not rejected: the same key may ask
    assert isinstance(again, AwaitingOwner)
    assert again.new


async def test_a_second_key_of_a_pin_paired_appliance_needs_its_pin_and_keeps_it(
    policy: EnrollmentPolicy,
) -> None:
    """A stranger's key sent without a PIN, waiting next to the real one, must not replace its PIN."""
    real, stranger = request(), request()
    waiting = await ask(policy, claim(), real, None)
    sneaking = await ask(policy, claim(secret=""), stranger, None)  # before the owner approved oven
    assert isinstance(waiting, AwaitingOwner) and isinstance(sneaking, AwaitingOwner)
    assert policy.review(sneaking.pending.request_id).confirmations == (
        Confirmation.FINGERPRINT,  # a first pairing, as things stand
    )
    paired = await policy.approve(waiting.pending.request_id, pin="123456")
    assert isinstance(paired, Registration)

    review = policy.review(sneaking.pending.request_id)  # worked out now, not when it arrived
    assert review.paired == paired
    assert review.confirmations == ()
    with pytest.raises(ProofMismatch, match="does not bring the proof it was paired with"):
        await policy.approve(sneaking.pending.request_id)
    with pytest.raises(NotAllowed, match="sent no PIN"):
        await policy.approve(sneaking.pending.request_id, pin="123456")
    assert policy.registration("oven") == paired
    assert await ask(policy, claim(), real, None) == Approved("oven")  # the real oven keeps its PIN

    new_key = request()  # the real oven with a new key (reset): its PIN, and the owner's
    again = await ask(policy, claim(), new_key, None)
    assert isinstance(again, AwaitingOwner)
    assert policy.review(again.pending.request_id).confirmations == (Confirmation.PIN,)
    with pytest.raises(ProofMismatch, match="approve its new key with the PIN"):
        await policy.approve(again.pending.request_id)
    registration = await policy.approve(again.pending.request_id, pin="123456")
    assert isinstance(registration, Registration)
    assert registration.keys == {real.key_fingerprint, new_key.key_fingerprint}
    assert registration.verifier == paired.verifier
    assert registration.kind is CredentialKind.PIN


async def test_the_typed_pin_must_be_the_one_the_appliance_was_paired_with(policy: EnrollmentPolicy) -> None:
    first = await ask(policy, claim(secret="123456"), request(), None)
    other = await ask(policy, claim(secret="777777"), request(), None)  # waiting beside it
    assert isinstance(first, AwaitingOwner) and isinstance(other, AwaitingOwner)
    await policy.approve(first.pending.request_id, pin="123456")
    with pytest.raises(WrongPin, match="the one oven was paired with"):
        await policy.approve(other.pending.request_id, pin="777777")
    with pytest.raises(WrongPin, match="the one the appliance sent"):
        await policy.approve(other.pending.request_id, pin="123456")


async def test_a_new_key_of_a_fingerprint_paired_appliance_keeps_its_details_unless_told(
    policy: EnrollmentPolicy,
) -> None:
    said = ApplianceDetails(name="Oven", model="OV-200", serial_number="SN-42")
    oven = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", details=said))
    first = await ask(policy, claim(secret=""), oven, None)
    assert isinstance(first, AwaitingOwner)
    paired = await policy.approve(first.pending.request_id)
    assert isinstance(paired, Registration)
    other = ApplianceDetails(name="Evil oven", model="X-1", serial_number="SN-666")
    for use_new_details, expected in ((False, paired.details), (True, other)):
        key = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", details=other))
        waiting = await ask(policy, claim(secret=""), key, None)
        assert isinstance(waiting, AwaitingOwner)
        review = policy.review(waiting.pending.request_id)
        assert review.confirmations == (Confirmation.FINGERPRINT,)
        assert review.paired is not None and review.paired.details == paired.details
        assert review.pending.details == other
        approved = await policy.approve(waiting.pending.request_id, use_new_details=use_new_details)
        assert isinstance(approved, Registration)
        assert approved.details == expected
        assert approved.verifier is None


# --- the hub keeps no PIN -----------------------------------------------------------------------------


class CountingWork(ThreadedSrp):
    """The slow SRP work, counted; ``gate`` (when set) holds every PIN check until it opens."""

    def __init__(self) -> None:
        super().__init__()
        self.checks = 0
        self.gate: asyncio.Event | None = None

    async def pin_matches(self, verifier: PinVerifier, pin: str) -> bool:
        self.checks += 1
        if self.gate is not None:
            await self.gate.wait()
        return await super().pin_matches(verifier, pin)


class BusyWork(ThreadedSrp):
    """An SRP worker with no room left."""

    async def make_verifier(self, appliance_id: str, pin: str) -> PinVerifier:
        raise Busy("the hub is busy with PIN checks; try again shortly", 1)


@pytest.fixture
def work() -> CountingWork:
    return CountingWork()


@pytest.fixture
def counted(clock: Clock, work: CountingWork) -> EnrollmentPolicy:
    return EnrollmentPolicy(clock=clock, work=work)


async def test_the_hub_keeps_a_verifier_of_the_pin_never_the_pin_nor_a_fast_digest(
    counted: EnrollmentPolicy,
) -> None:
    await counted.preregister("oven", "123456")
    waiting = await ask(counted, claim("fridge", "777777"), request("fridge"), None)
    assert isinstance(waiting, AwaitingOwner)
    await counted.approve(waiting.pending.request_id, pin="777777")
    state = counted.export()
    assert state["version"] == 2
    for registration, pin in zip(state["registrations"], ("123456", "777777"), strict=True):
        assert "secret_digest" not in registration  # what releases before verifiers would read
        assert set(registration["verifier"]) == {"method", "appliance_id", "salt", "verifier"}
        assert PinVerifier.from_dict(registration["verifier"]).matches(pin)
    assert "123456" not in json.dumps(state) and "777777" not in json.dumps(state)


async def test_repeated_requests_with_the_right_pin_cost_one_slow_check(
    counted: EnrollmentPolicy, work: CountingWork
) -> None:
    """A client that repeats its request (a lost answer, a loop) does not keep the worker busy."""
    await counted.preregister("oven", "123456")
    oven = request()
    for _ in range(5):
        assert await ask(counted, claim(), oven, None) == Approved("oven")
    assert work.checks == 1
    with pytest.raises(AuthenticationRequired):
        await ask(counted, claim(secret="654321"), oven, None)
    assert work.checks == 2


async def test_guesses_sent_at_once_are_checked_one_at_a_time(
    counted: EnrollmentPolicy, work: CountingWork
) -> None:
    """Otherwise all of them would be checked before the first wrong one is counted."""
    await counted.preregister("oven", "123456")
    work.gate = asyncio.Event()
    guesses = [
        asyncio.create_task(ask(counted, claim(secret=f"{guess:06}"), request(), None)) for guess in range(20)
    ]
    await asyncio.sleep(0.01)
    assert work.checks == 1  # the others wait their turn
    work.gate.set()
    outcomes = await asyncio.gather(*guesses, return_exceptions=True)
    assert work.checks == FREE_ATTEMPTS  # then the lockout refuses the rest before any check
    assert sum(isinstance(o, LockedOut) for o in outcomes) == 20 - FREE_ATTEMPTS
    assert sum(type(o) is AuthenticationRequired for o in outcomes) == FREE_ATTEMPTS


async def test_a_request_approved_by_comparing_fingerprints_is_paired_with_the_pin_it_sent(
    policy: EnrollmentPolicy,
) -> None:
    waiting = await ask(policy, claim(secret="123456"), request(), None)
    assert isinstance(waiting, AwaitingOwner)
    registration = await policy.approve(waiting.pending.request_id)
    assert isinstance(registration, Registration)
    assert registration.verifier is not None and registration.verifier.matches("123456")
    another = await ask(policy, claim(secret="123456"), request(), None)  # reset: a new key
    assert isinstance(another, AwaitingOwner)
    with pytest.raises(AuthenticationRequired):
        await ask(policy, claim(secret="000000"), request(), None)


async def test_a_pin_digest_from_an_older_release_is_replaced_once_the_pin_proves_itself(
    policy: EnrollmentPolicy,
) -> None:
    oven = request()
    policy.restore(
        {
            "version": 1,
            "registrations": [
                {
                    "appliance_id": "oven",
                    "identity": "id:oven",
                    "kind": "pin",
                    "secret_digest": digest_secret("123456"),
                    "keys": [oven.key_fingerprint],
                    "details": {"name": None, "model": None, "manufacturer": None, "serial_number": None},
                    "approved_at": 0.0,
                    "preregistered": False,
                }
            ],
        }
    )
    with pytest.raises(AuthenticationRequired):
        await ask(policy, claim(secret="654321"), oven, None)
    assert "secret_digest" in policy.export()["registrations"][0]  # kept as it was until then
    busy = policy.work
    policy.work = BusyWork()
    assert await ask(policy, claim(), oven, None) == Approved("oven")  # the worker is busy: next time
    assert "secret_digest" in policy.export()["registrations"][0]
    policy.work = busy
    assert await ask(policy, claim(), oven, None) == Approved("oven")
    (saved,) = policy.export()["registrations"]
    assert "secret_digest" not in saved
    assert PinVerifier.from_dict(saved["verifier"]).matches("123456")
    assert await ask(policy, claim(), oven, None) == Approved("oven")


# --- the PIN exchange ----------------------------------------------------------------------------------


async def test_an_exchange_is_challenged_with_a_preregistration_a_paired_key_or_the_owners_pin(
    policy: EnrollmentPolicy,
) -> None:
    preregistered = await policy.preregister("oven", "123456")
    oven = request()
    assert await policy.exchange_verifier("oven", oven, None) == preregistered.verifier
    assert preregistered.verifier is not None
    assert policy.approve_exchanged("oven", oven, preregistered.verifier) == Approved("oven")
    assert await policy.exchange_verifier("oven", oven, None) == preregistered.verifier  # its key, again

    reset = request()  # the oven with a new key: its owner approves it, with its PIN
    waiting = await policy.exchange_verifier("oven", reset, None)
    assert isinstance(waiting, AwaitingOwner) and waiting.pending.kind is CredentialKind.PAKE
    assert policy.review(waiting.pending.request_id).confirmations == (Confirmation.PIN,)
    with pytest.raises(WrongPin, match="the one oven was paired with"):
        await policy.approve(waiting.pending.request_id, pin="000000")
    approved = await policy.approve(waiting.pending.request_id, pin="123456")
    assert isinstance(approved, Registration) and approved.keys == {
        oven.key_fingerprint,
        reset.key_fingerprint,
    }
    assert await policy.exchange_verifier("oven", reset, None) == preregistered.verifier

    fridge = request("fridge")
    first = await policy.exchange_verifier("fridge", fridge, "192.0.2.7")
    assert isinstance(first, AwaitingOwner) and first.new
    again = await policy.exchange_verifier("fridge", fridge, "192.0.2.8")
    assert isinstance(again, AwaitingOwner) and not again.new
    given = await policy.approve(first.pending.request_id, pin="777777")
    assert isinstance(given, PinGiven) and given.pending.verifier is not None
    assert await policy.exchange_verifier("fridge", fridge, None) == given.pending.verifier


async def test_the_owner_mistyping_the_pin_thrice_ends_the_request_and_locks_the_appliance(
    policy: EnrollmentPolicy,
) -> None:
    fridge = request("fridge")
    waiting = await policy.exchange_verifier("fridge", fridge, None)
    assert isinstance(waiting, AwaitingOwner)
    for attempts_left in range(OWNER_PIN_ATTEMPTS - 1, -1, -1):
        given = await policy.approve(waiting.pending.request_id, pin="000000")
        assert isinstance(given, PinGiven) and given.pending.verifier is not None
        told = policy.next_exchange(waiting.pending.request_id)  # the owner's dialog waits
        failure = policy.exchange_failed("fridge", fridge.key_fingerprint, given.pending.verifier)
        assert (failure.pending, failure.attempts_left) == (waiting.pending, attempts_left)
        assert await told == failure  # the last one too, though it dropped the request
    assert policy.pending_requests() == []
    assert await policy.next_exchange(waiting.pending.request_id) is None  # nothing waits any more
    with pytest.raises(LockedOut):
        await policy.exchange_verifier("fridge", fridge, None)


async def test_a_wait_for_the_next_exchange_ends_when_the_request_goes_another_way(
    policy: EnrollmentPolicy,
) -> None:
    waiting = await policy.exchange_verifier("fridge", request("fridge"), None)
    assert isinstance(waiting, AwaitingOwner)
    request_id = waiting.pending.request_id
    assert isinstance(await policy.approve(request_id, pin="246810"), PinGiven)
    closed = policy.next_exchange(request_id)
    closed.cancel()  # a dialog closed before the appliance came back
    told = policy.next_exchange(request_id)
    policy.reject(request_id)  # say from the command line, meanwhile
    assert await told is None
    assert closed.cancelled()


async def test_an_exchange_proves_only_the_pin_the_hub_has_now(policy: EnrollmentPolicy) -> None:
    fridge = request("fridge")
    waiting = await policy.exchange_verifier("fridge", fridge, None)
    assert isinstance(waiting, AwaitingOwner)
    first = await policy.approve(waiting.pending.request_id, pin="777777")
    assert isinstance(first, PinGiven) and first.pending.verifier is not None
    earlier = first.pending.verifier
    await policy.approve(waiting.pending.request_id, pin="777778")  # the owner typed it again meanwhile
    with pytest.raises(ExchangeGone, match="start again"):
        policy.approve_exchanged("fridge", fridge, earlier)
    assert policy.registration("fridge") is None


def test_locking_an_identity_with_no_wrong_secret_yet_locks_it(clock: Clock) -> None:
    """The owner's third wrong PIN locks an appliance that never sent a wrong secret itself."""
    throttle = SecretThrottle(clock)
    throttle.lock("id:oven")
    with pytest.raises(LockedOut):
        throttle.check("id:oven")
    assert throttle.locked_until("id:oven") is not None
