"""Who may enroll: pending requests, the owner's decisions, and wrong-secret throttling."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.csr import ApplianceDetails, CertificateRequest, inspect_request
from custom_components.est_pairing.est.errors import (
    AuthenticationRequired,
    Busy,
    CertificateRevoked,
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
    EnrollmentPolicy,
    PendingEnrollment,
    PolicyListener,
    digest_secret,
    secret_matches,
)
from custom_components.est_pairing.est.status import status_for
from custom_components.est_pairing.est.throttle import MAX_TRACKED, SecretThrottle
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


def test_unknown_appliance_waits_and_the_owner_is_told_once(policy: EnrollmentPolicy, heard: Heard) -> None:
    seen = heard.added
    oven = request()
    first = policy.authorize(claim(), oven, "10.0.0.5")
    assert isinstance(first, AwaitingOwner) and first.new
    second = policy.authorize(claim(), oven, "10.0.0.6")
    assert isinstance(second, AwaitingOwner) and not second.new
    assert len(seen) == 1
    assert seen[0].address == "10.0.0.6"
    assert seen[0].key_fingerprint == oven.key_fingerprint


def test_approval_with_the_right_pin_then_issue(policy: EnrollmentPolicy) -> None:
    oven = request()
    pending = policy.authorize(claim(), oven, None)
    assert isinstance(pending, AwaitingOwner)
    registration = policy.approve(pending.pending.request_id, pin=" 123456 ")
    assert registration.keys == {oven.key_fingerprint}
    assert policy.authorize(claim(), oven, None) == Approved("oven")
    with pytest.raises(AuthenticationRequired):
        policy.authorize(claim(secret="654321"), oven, None)
    assert policy.pending_requests() == []


def test_wrong_pins_typed_by_the_owner_stop_the_flow_and_lock(policy: EnrollmentPolicy) -> None:
    pending = policy.authorize(claim(), request(), None)
    assert isinstance(pending, AwaitingOwner)
    request_id = pending.pending.request_id
    for attempts_left in range(OWNER_PIN_ATTEMPTS - 1, 0, -1):
        with pytest.raises(WrongPin) as wrong:
            policy.approve(request_id, pin="000000")
        assert wrong.value.attempts_left == attempts_left
    with pytest.raises(LockedOut):
        policy.approve(request_id, pin="000000")
    with pytest.raises(PendingRequestGone):
        policy.approve(request_id, pin="123456")
    with pytest.raises(LockedOut):
        policy.authorize(claim(), request(), None)


def test_pin_approval_needs_a_pin_from_the_appliance(policy: EnrollmentPolicy) -> None:
    pending = policy.authorize(claim(secret=""), request(), None)
    assert isinstance(pending, AwaitingOwner)
    with pytest.raises(NotAllowed, match="compare the fingerprints"):
        policy.approve(pending.pending.request_id, pin="123456")
    policy.approve(pending.pending.request_id)  # fingerprints confirmed
    assert policy.registration("oven") is not None


def test_rejection_is_remembered_for_that_key(policy: EnrollmentPolicy) -> None:
    oven = request()
    pending = policy.authorize(claim(), oven, None)
    assert isinstance(pending, AwaitingOwner)
    policy.reject(pending.pending.request_id)
    with pytest.raises(NotAllowed, match="rejected"):
        policy.authorize(claim(), oven, None)
    assert isinstance(policy.authorize(claim(), request(), None), AwaitingOwner)


def test_a_preregistration_admits_the_first_key_with_the_secret_only(policy: EnrollmentPolicy) -> None:
    policy.preregister("oven", "123456")
    with pytest.raises(AuthenticationRequired):
        policy.authorize(claim(secret="1"), request(), None)
    first = request()
    assert policy.authorize(claim(), first, None) == Approved("oven")
    assert policy.authorize(claim(), first, None) == Approved("oven")  # its retry
    registration = policy.registration("oven")
    assert registration is not None and not registration.preregistered
    assert registration.keys == {first.key_fingerprint}
    assert isinstance(policy.authorize(claim(), request(), None), AwaitingOwner)  # another key: the owner
    with pytest.raises(NotAllowed, match="paired already"):
        policy.preregister("oven", "123456")  # arming it again would admit that key unattended
    with pytest.raises(MalformedRequest):
        policy.preregister("oven", "")


@pytest.mark.parametrize("appliance_id", ["oven.local", "oven.", "login.microsoftonline.com"])
def test_a_new_id_is_one_dns_label(policy: EnrollmentPolicy, appliance_id: str) -> None:
    """Pre-registered (the owner, --user) or asked for by a request: the same rule, the same reason."""
    with pytest.raises(MalformedRequest, match=r"with no '\.'"):
        policy.preregister(appliance_id, "123456")
    with pytest.raises(MalformedRequest, match=r"with no '\.'"):
        policy.authorize(claim(appliance_id), request(appliance_id), None)
    assert policy.registrations() == [] and policy.pending_requests() == []


def test_preregistering_an_appliance_that_waits_withdraws_its_request(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    """Its card under Discovered would otherwise outlive the enrollment the registration allows."""
    oven = request()
    waiting = policy.authorize(claim(), oven, None)
    other = policy.authorize(claim("fridge"), request("fridge"), None)
    assert isinstance(waiting, AwaitingOwner) and isinstance(other, AwaitingOwner)
    policy.preregister("oven", "123456")
    assert [pending.request_id for pending in heard.removed] == [waiting.pending.request_id]
    assert [p.appliance_id for p in policy.pending_requests()] == ["fridge"]
    assert policy.authorize(claim(), oven, None) == Approved("oven")  # its retry, with the PIN


def test_a_preregistration_learns_what_the_appliance_says_about_itself(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    policy.preregister("oven", "123456", ApplianceDetails(name="Kitchen oven"))  # what the owner typed
    heard.changes = 0
    said = ApplianceDetails(name="OV oven", model="OV-200", manufacturer="Acme", serial_number="SN-42")
    oven = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", details=said))
    assert policy.authorize(claim(), oven, None) == Approved("oven")
    registration = policy.registration("oven")
    assert registration is not None
    assert registration.details == ApplianceDetails("Kitchen oven", "OV-200", "Acme", "SN-42")  # owner's name
    assert heard.changes == 1
    assert policy.authorize(claim(), oven, None) == Approved("oven")  # its retry: no save
    assert policy.registration("oven") == registration
    assert heard.changes == 1


def test_revoked_keys_never_enroll_again(policy: EnrollmentPolicy) -> None:
    policy.preregister("oven", "123456")
    oven = request()
    policy.remove("oven", [oven.key_fingerprint])
    with pytest.raises(CertificateRevoked):
        policy.authorize(claim(), oven, None)
    assert isinstance(policy.authorize(claim(), request(), None), AwaitingOwner)


def test_only_an_authenticated_claim_learns_that_its_key_was_revoked(policy: EnrollmentPolicy) -> None:
    """Pre-registered again after a revocation: the old key with a wrong secret is a 401 like any
    wrong secret, not a 403 telling a guesser which keys were revoked."""
    policy.preregister("oven", "123456")
    oven = request()
    policy.remove("oven", [oven.key_fingerprint])
    policy.preregister("oven", "654321")
    with pytest.raises(AuthenticationRequired, match="wrong secret"):
        policy.authorize(claim(secret="123456"), oven, None)
    with pytest.raises(CertificateRevoked):
        policy.authorize(claim(secret="654321"), oven, None)


def test_pending_requests_are_bounded(policy: EnrollmentPolicy) -> None:
    for _ in range(PENDING_MAX_PER_IDENTITY):
        policy.authorize(claim(), request(), None)
    with pytest.raises(TooManyRequests, match="this appliance id"):
        policy.authorize(claim(), request(), None)
    for index in range(PENDING_MAX_PER_ADDRESS):
        policy.authorize(claim(f"a{index}"), request(f"a{index}"), "10.0.0.9")
    with pytest.raises(TooManyRequests, match="this address"):
        policy.authorize(claim("b"), request("b"), "10.0.0.9")
    for index in range(PENDING_MAX - len(policy.pending_requests())):
        policy.authorize(claim(f"c{index}"), request(f"c{index}"), f"10.0.1.{index}")
    with pytest.raises(Busy, match="waiting for the owner"):  # overall: the server's bound, 503
        policy.authorize(claim("d"), request("d"), "10.0.2.1")


def test_pending_requests_expire_when_the_appliance_stops_asking(
    policy: EnrollmentPolicy, clock: Clock, heard: Heard
) -> None:
    pending = policy.authorize(claim(), request(), None)
    assert isinstance(pending, AwaitingOwner)
    clock.now += PENDING_IDLE_TTL + 1
    assert policy.pending_requests() == []
    with pytest.raises(PendingRequestGone):
        policy.review(pending.pending.request_id)
    assert heard.removed == []  # reading changed nothing: expiry is a step of its own
    policy.expire_pending()
    assert heard.removed == [pending.pending]
    with pytest.raises(PendingRequestGone):
        policy.approve(pending.pending.request_id)


def test_a_decision_drops_expired_requests(policy: EnrollmentPolicy, clock: Clock, heard: Heard) -> None:
    """Approving one that expired meanwhile says it is gone, and the application hears it went."""
    pending = policy.authorize(claim(), request(), None)
    assert isinstance(pending, AwaitingOwner)
    clock.now += PENDING_IDLE_TTL + 1
    with pytest.raises(PendingRequestGone):
        policy.approve(pending.pending.request_id, pin="123456")
    assert heard.removed == [pending.pending]


def test_lockout_grows_and_ends_after_its_window(policy: EnrollmentPolicy, clock: Clock) -> None:
    policy.preregister("oven", "123456")
    oven = request()
    for _ in range(FREE_ATTEMPTS):
        with pytest.raises(AuthenticationRequired):
            policy.authorize(claim(secret="000000"), oven, None)
    with pytest.raises(LockedOut) as locked:
        policy.authorize(claim(), oven, None)
    assert locked.value.retry_after == LOCKOUT_BASE
    for _ in range(10_000):  # hammering while locked is refused without extending the lockout
        with pytest.raises(LockedOut):
            policy.authorize(claim(secret="000000"), oven, None)
    clock.now += LOCKOUT_BASE + 1
    with pytest.raises(AuthenticationRequired):
        policy.authorize(claim(secret="000001"), oven, None)
    with pytest.raises(LockedOut) as longer:
        policy.authorize(claim(), oven, None)
    assert longer.value.retry_after == 2 * LOCKOUT_BASE
    clock.now += 2 * LOCKOUT_BASE + 1
    assert policy.authorize(claim(), oven, None) == Approved("oven")


def test_a_million_guesses_take_more_than_a_century(policy: EnrollmentPolicy, clock: Clock) -> None:
    policy.preregister("oven", "123456")
    oven = request()
    guesses, start = 0, clock.now
    while guesses < 200:
        try:
            policy.authorize(claim(secret=f"{guesses:06d}x"), oven, None)
        except LockedOut as locked:
            clock.now += locked.retry_after
        except AuthenticationRequired:
            guesses += 1
    rate = guesses / (clock.now - start)  # guesses per second once the lockout has grown
    assert 1_000_000 / rate / (365 * 86400) > 100
    assert clock.now - start >= (200 - FREE_ATTEMPTS - 10) * LOCKOUT_MAX


def test_global_ceiling_on_wrong_secrets(policy: EnrollmentPolicy) -> None:
    for index in range(60):
        policy.preregister(f"a{index}", "123456")
        with pytest.raises(AuthenticationRequired):
            policy.authorize(claim(f"a{index}", "000000"), request(f"a{index}"), None)
    policy.preregister("oven", "123456")
    with pytest.raises(LockedOut, match="on this server"):
        policy.authorize(claim(), request(), None)


def test_the_global_ceiling_does_not_keep_the_owner_from_approving_by_pin(
    policy: EnrollmentPolicy,
) -> None:
    fridge = request("fridge")
    pending = policy.authorize(claim("fridge", "777777"), fridge, None)
    assert isinstance(pending, AwaitingOwner)
    for index in range(60):  # guessers on the LAN reach the ceiling meanwhile
        policy.preregister(f"a{index}", "123456")
        with pytest.raises(AuthenticationRequired):
            policy.authorize(claim(f"a{index}", "000000"), request(f"a{index}"), None)
    with pytest.raises(LockedOut, match="on this server"):
        policy.authorize(claim("fridge", "777777"), fridge, None)
    registration = policy.approve(pending.pending.request_id, pin="777777")
    assert registration.keys == {fridge.key_fingerprint}


def test_export_and_restore_keep_decisions_but_not_secrets(policy: EnrollmentPolicy) -> None:
    policy.preregister("oven", "123456")
    oven = request("fridge")
    pending = policy.authorize(claim("fridge", "777777"), oven, None)
    assert isinstance(pending, AwaitingOwner)
    policy.reject(pending.pending.request_id)
    state = policy.export()
    assert "123456" not in str(state) and "777777" not in str(state)
    restored = EnrollmentPolicy()
    restored.restore(state)
    assert restored.authorize(claim(), request(), None) == Approved("oven")
    with pytest.raises(NotAllowed):
        restored.authorize(claim("fridge", "777777"), oven, None)


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


def test_the_embedding_application_refuses_and_withdraws_without_deciding(
    policy: EnrollmentPolicy, heard: Heard
) -> None:
    oven = request()
    pending = policy.authorize(claim(), oven, None)
    assert isinstance(pending, AwaitingOwner)
    policy.withdraw(pending.pending.request_id)
    assert policy.pending_requests() == []
    heard.refused["id:oven"] = "the owner ignored it"
    with pytest.raises(NotAllowed, match="ignored it"):
        policy.authorize(claim(), oven, None)
    assert isinstance(policy.authorize(claim("fridge"), request("fridge"), None), AwaitingOwner)
    heard.refused.clear()
    again = policy.authorize(claim(), oven, None)  # withdrawn is not rejected: the same key may ask
    assert isinstance(again, AwaitingOwner)
    assert again.new


def test_a_second_key_of_a_pin_paired_appliance_needs_its_pin_and_keeps_it(policy: EnrollmentPolicy) -> None:
    """A stranger's key sent without a PIN, waiting next to the real one, must not replace its PIN."""
    real, stranger = request(), request()
    waiting = policy.authorize(claim(), real, None)
    sneaking = policy.authorize(claim(secret=""), stranger, None)  # before the owner approved oven
    assert isinstance(waiting, AwaitingOwner) and isinstance(sneaking, AwaitingOwner)
    assert policy.review(sneaking.pending.request_id).confirmations == (
        Confirmation.FINGERPRINT,  # a first pairing, as things stand
    )
    paired = policy.approve(waiting.pending.request_id, pin="123456")

    review = policy.review(sneaking.pending.request_id)  # worked out now, not when it arrived
    assert review.paired == paired
    assert review.confirmations == ()
    with pytest.raises(ProofMismatch, match="does not bring the proof it was paired with"):
        policy.approve(sneaking.pending.request_id)
    with pytest.raises(NotAllowed, match="sent no PIN"):
        policy.approve(sneaking.pending.request_id, pin="123456")
    assert policy.registration("oven") == paired
    assert policy.authorize(claim(), real, None) == Approved("oven")  # the real oven keeps its PIN

    new_key = request()  # the real oven with a new key (reset): its PIN, and the owner's
    again = policy.authorize(claim(), new_key, None)
    assert isinstance(again, AwaitingOwner)
    assert policy.review(again.pending.request_id).confirmations == (Confirmation.PIN,)
    with pytest.raises(ProofMismatch, match="approve its new key with the PIN"):
        policy.approve(again.pending.request_id)
    registration = policy.approve(again.pending.request_id, pin="123456")
    assert registration.keys == {real.key_fingerprint, new_key.key_fingerprint}
    assert registration.secret_digest == paired.secret_digest
    assert registration.kind is CredentialKind.PIN


def test_the_typed_pin_must_be_the_one_the_appliance_was_paired_with(policy: EnrollmentPolicy) -> None:
    first = policy.authorize(claim(secret="123456"), request(), None)
    other = policy.authorize(claim(secret="777777"), request(), None)  # waiting beside it
    assert isinstance(first, AwaitingOwner) and isinstance(other, AwaitingOwner)
    policy.approve(first.pending.request_id, pin="123456")
    with pytest.raises(WrongPin, match="the one oven was paired with"):
        policy.approve(other.pending.request_id, pin="777777")
    with pytest.raises(WrongPin, match="the one the appliance sent"):
        policy.approve(other.pending.request_id, pin="123456")


def test_a_new_key_of_a_fingerprint_paired_appliance_keeps_its_details_unless_told(
    policy: EnrollmentPolicy,
) -> None:
    said = ApplianceDetails(name="Oven", model="OV-200", serial_number="SN-42")
    oven = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", details=said))
    first = policy.authorize(claim(secret=""), oven, None)
    assert isinstance(first, AwaitingOwner)
    paired = policy.approve(first.pending.request_id)
    other = ApplianceDetails(name="Evil oven", model="X-1", serial_number="SN-666")
    for use_new_details, expected in ((False, paired.details), (True, other)):
        key = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", details=other))
        waiting = policy.authorize(claim(secret=""), key, None)
        assert isinstance(waiting, AwaitingOwner)
        review = policy.review(waiting.pending.request_id)
        assert review.confirmations == (Confirmation.FINGERPRINT,)
        assert review.paired is not None and review.paired.details == paired.details
        assert review.pending.details == other
        approved = policy.approve(waiting.pending.request_id, use_new_details=use_new_details)
        assert approved.details == expected
        assert approved.secret_digest is None


def test_locking_an_identity_with_no_wrong_secret_yet_locks_it(clock: Clock) -> None:
    """The owner's third wrong PIN locks an appliance that never sent a wrong secret itself."""
    throttle = SecretThrottle(clock)
    throttle.lock("id:oven")
    with pytest.raises(LockedOut):
        throttle.check("id:oven")
    assert throttle.locked_until("id:oven") is not None
