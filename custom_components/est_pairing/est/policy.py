"""Who may enroll: pre-registrations, owner approvals, pending requests, rejections (pure, no I/O).

The host application (Home Assistant, or the standalone command) drives it: it approves or rejects
pending requests, pre-registers appliances, expires requests nobody decided (:meth:`expire_pending`),
and persists :meth:`EnrollmentPolicy.export` whenever its :class:`PolicyListener` hears
``approvals_changed``. Reading (``pending_requests``, ``review``, ``registrations``) changes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
import hashlib
import hmac
import secrets
import time
from typing import Any

from cryptography import x509

from .credentials import BasicCredentials
from .csr import ApplianceDetails, CertificateRequest, displayable
from .errors import (
    AuthenticationRequired,
    Busy,
    CertificateRevoked,
    LockedOut,
    MalformedRequest,
    NameTaken,
    NotAllowed,
    PendingRequestGone,
    ProofMismatch,
    Rejected,
    TooManyRequests,
    WrongPin,
)
from .fingerprints import certificate_fingerprint
from .issuance import appliance_names, check_appliance_id, check_claimed_id, factory_appliance_id
from .limits import (
    MAX_SECRET_LENGTH,
    OWNER_PIN_ATTEMPTS,
    PENDING_IDLE_TTL,
    PENDING_MAX,
    PENDING_MAX_PER_ADDRESS,
    PENDING_MAX_PER_IDENTITY,
    PENDING_TTL,
    REJECTED_MAX,
    RETRY_AFTER_PENDING,
)
from .throttle import SecretThrottle

STATE_VERSION = 1


class CredentialKind(StrEnum):
    """How an appliance proves who it is on first enrollment."""

    PIN = "pin"  # HTTP Basic with the PIN printed on the appliance (or a one-time secret)
    FINGERPRINT = "fingerprint"  # HTTP Basic with an empty password: the owner compares fingerprints
    FACTORY = "factory"  # a factory certificate chaining to a configured manufacturer CA


@dataclass(frozen=True, slots=True)
class Claim:
    """Who a first-enrollment request says it is. The secret never appears in ``repr``."""

    identity: str
    appliance_id: str
    kind: CredentialKind
    secret: str = field(default="", repr=False)
    factory_fingerprint: str | None = None
    factory_issuer: str | None = None
    details: ApplianceDetails = field(default_factory=ApplianceDetails)

    @classmethod
    def from_basic(cls, credentials: BasicCredentials) -> Claim:
        """Username = appliance id; password = PIN, or empty for fingerprint comparison."""
        appliance_id = check_claimed_id(credentials.username)
        if len(credentials.password) > MAX_SECRET_LENGTH:
            raise MalformedRequest(f"secret is longer than {MAX_SECRET_LENGTH} characters")
        kind = CredentialKind.PIN if credentials.password else CredentialKind.FINGERPRINT
        return cls(f"id:{appliance_id}", appliance_id, kind, credentials.password)

    @classmethod
    def from_factory_certificate(cls, certificate: x509.Certificate) -> Claim:
        """Identity = the factory certificate's fingerprint; the id comes from its serial or CN."""
        fingerprint = certificate_fingerprint(certificate)
        try:  # cryptography decodes names when read: OpenSSL accepts some it cannot decode
            details = ApplianceDetails.from_name(certificate.subject)
            issuer = displayable(certificate.issuer.rfc4514_string())
        except ValueError:
            raise MalformedRequest("client certificate cannot be decoded") from None
        appliance_id = factory_appliance_id(details, fingerprint)
        return cls(
            f"factory:{fingerprint}",
            appliance_id,
            CredentialKind.FACTORY,
            factory_fingerprint=fingerprint,
            factory_issuer=issuer,
            details=details,
        )


@dataclass(frozen=True, slots=True)
class Registration:
    """An appliance the owner approved or pre-registered.

    ``keys`` are the public-key fingerprints the owner approved. A pre-registration has none until it
    is used: the first key presented with the right secret is accepted, so the appliance enrolls
    unattended, and the pre-registration becomes the approval of that key alone.
    """

    appliance_id: str
    identity: str
    kind: CredentialKind
    secret_digest: str | None
    keys: frozenset[str]
    details: ApplianceDetails
    approved_at: float
    preregistered: bool = False


@dataclass(slots=True)
class PendingEnrollment:
    """A well-formed first-enrollment request waiting for the owner."""

    request_id: str
    identity: str
    appliance_id: str
    kind: CredentialKind
    secret_digest: str | None = field(repr=False)
    key_fingerprint: str
    key_description: str
    details: ApplianceDetails
    address: str | None
    first_seen: float
    last_seen: float
    factory_fingerprint: str | None = None
    factory_issuer: str | None = None
    owner_pin_failures: int = 0


class Confirmation(StrEnum):
    """How the owner may confirm a waiting request."""

    PIN = "pin"  # types the PIN printed on the appliance
    FINGERPRINT = "fingerprint"  # compares the key fingerprint with the one the appliance shows


@dataclass(frozen=True, slots=True)
class Review:
    """What the owner decides on, worked out when it is shown (not when the request arrived).

    ``paired``: the appliance already paired or pre-registered under the request's id, if any.
    ``confirmations``: how the owner may approve it; none when it cannot be approved (a new key for a
    paired appliance that does not bring the proof the appliance was paired with).
    """

    pending: PendingEnrollment
    paired: Registration | None
    confirmations: tuple[Confirmation, ...]


@dataclass(frozen=True, slots=True)
class Approved:
    """Issue a certificate to this appliance now."""

    appliance_id: str


@dataclass(frozen=True, slots=True)
class AwaitingOwner:
    """Answer 202: the owner has not decided yet."""

    pending: PendingEnrollment
    retry_after: int
    new: bool


type Decision = Approved | AwaitingOwner


def request_id_for(identity: str, key_fingerprint: str) -> str:
    """A short stable handle for one (identity, key) request, for flows and the command line."""
    return hashlib.sha256(f"{identity}\0{key_fingerprint}".encode()).hexdigest()[:20]


def digest_secret(secret: str) -> str:
    """Salted SHA-256 of a secret: stored and compared instead of the secret itself."""
    salt = secrets.token_hex(16)
    return f"{salt}${hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()}"


def secret_matches(secret: str, digest: str | None) -> bool:
    """Constant-time comparison of a presented secret with a stored digest (None = no secret)."""
    if digest is None:
        return hmac.compare_digest(secret.encode(), b"")
    salt, _, expected = digest.partition("$")
    actual = hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()
    return hmac.compare_digest(actual, expected)


class PolicyListener:
    """What the policy tells the application that embeds it; each method does nothing here.

    An application overrides the ones it follows. ``refusal`` is the one question the policy asks.
    """

    def pending_added(self, pending: PendingEnrollment) -> None:
        """A new request waits for the owner."""

    def pending_removed(self, pending: PendingEnrollment) -> None:
        """A request stopped waiting: decided, withdrawn, answered by a pre-registration, or expired."""

    def approvals_changed(self) -> None:
        """Registrations, rejections or revoked keys changed: what :meth:`EnrollmentPolicy.export` gives."""

    def refusal(self, identity: str) -> str | None:
        """The application's own reason to refuse this identity, or None to go on.

        Home Assistant refuses appliances the owner ignored, for as long as they stay ignored.
        """
        return None


class EnrollmentPolicy:
    """Decides first enrollments; records the owner's decisions."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        auto_approve: bool = False,
        listener: PolicyListener | None = None,
    ) -> None:
        self._clock = clock
        self._listener = listener or PolicyListener()
        self.auto_approve = auto_approve  # test benches only: approve every well-formed request
        self.retry_after = RETRY_AFTER_PENDING  # seconds a waiting appliance is told to wait
        self.throttle = SecretThrottle(clock)
        self._registrations: dict[str, Registration] = {}
        self._pending: dict[str, PendingEnrollment] = {}
        self._rejected: OrderedDict[str, float] = OrderedDict()
        self._revoked_keys: set[str] = set()

    # --- requests ---------------------------------------------------------------------------------

    def authorize(self, claim: Claim, request: CertificateRequest, address: str | None) -> Decision:
        """Approve at once, keep waiting for the owner, or raise the reason to refuse.

        :meth:`authenticate`, then :meth:`decide`: a caller with checks of its own between the two
        calls them one by one.
        """
        self.authenticate(claim, request)
        return self.decide(claim, request, address)

    def authenticate(self, claim: Claim, request: CertificateRequest) -> None:
        """Raise AuthenticationRequired (401) or LockedOut (429) unless the claim's secret is right.

        Right means the one kept for it: by its appliance's registration, or by its request already
        waiting for the owner. Checked first, whatever the request asks (RFC 7235 §3.1): a refusal of
        what it asks (403) is for a requester that proved who it is. A claim nothing is kept for yet
        passes: its PIN is for the owner to check.
        """
        self.throttle.check(claim.identity)
        registration = self._registrations.get(claim.appliance_id)
        if registration is not None and registration.identity == claim.identity:
            self._check_secret(claim, registration.secret_digest)
        request_id = request_id_for(claim.identity, request.key_fingerprint)
        if request_id in self._pending:
            self._expire(self._clock())  # an expired request keeps no secret
            if (pending := self._pending.get(request_id)) is not None:
                self._check_secret(claim, pending.secret_digest)

    def decide(self, claim: Claim, request: CertificateRequest, address: str | None) -> Decision:
        """:meth:`authorize` for a claim :meth:`authenticate` accepted."""
        key = request.key_fingerprint
        if key in self._revoked_keys:
            raise CertificateRevoked(
                "this key's certificate was revoked; the appliance needs a new key and the owner's approval"
            )
        registration = self._registrations.get(claim.appliance_id)
        if registration is not None and registration.identity == claim.identity:
            if registration.preregistered:
                self._use_preregistration(registration, request)
                return Approved(registration.appliance_id)
            if key in registration.keys:
                return Approved(registration.appliance_id)
        try:
            self._check_distinct_name(claim.appliance_id)
        except NameTaken:
            # Counted like a wrong secret: probing ids for twins costs what guessing PINs costs.
            self.throttle.failure(claim.identity)
            raise
        if (refusal := self._listener.refusal(claim.identity)) is not None:
            raise NotAllowed(refusal)
        if self.auto_approve:
            return Approved(claim.appliance_id)
        request_id = request_id_for(claim.identity, key)
        if request_id in self._rejected:
            raise Rejected("the owner rejected this appliance")
        now = self._clock()
        self._expire(now)
        if (pending := self._pending.get(request_id)) is not None:
            pending.last_seen = now
            pending.address = address
            return AwaitingOwner(pending, self.retry_after, new=False)
        self._check_room(claim.identity, address)
        pending = PendingEnrollment(
            request_id=request_id,
            identity=claim.identity,
            appliance_id=claim.appliance_id,
            kind=claim.kind,
            secret_digest=digest_secret(claim.secret) if claim.secret else None,
            key_fingerprint=key,
            key_description=request.key_description,
            details=_merge(claim.details, request.details),
            address=address,
            first_seen=now,
            last_seen=now,
            factory_fingerprint=claim.factory_fingerprint,
            factory_issuer=claim.factory_issuer,
        )
        self._pending[request_id] = pending
        self._listener.pending_added(pending)
        return AwaitingOwner(pending, self.retry_after, new=True)

    def _use_preregistration(self, registration: Registration, request: CertificateRequest) -> None:
        """A pre-registration is used once: it becomes the approval of the first key that used it.

        Decided here, before the certificate is signed, so that two keys sent at once cannot both
        pass; the same key asking again (its answer was lost) is approved as that key. A later key
        needs the owner (or renewal with the certificate). The appliance's request fills in what the
        owner did not type (model, manufacturer, serial number); what the owner typed stays.
        """
        self._registrations[registration.appliance_id] = replace(
            registration,
            keys=frozenset({request.key_fingerprint}),
            details=_merge(registration.details, request.details),
            preregistered=False,
        )
        self._listener.approvals_changed()

    def check_key(self, key_fingerprint: str) -> None:
        """Refuse a key whose certificate was revoked (re-enrollment uses this too)."""
        if key_fingerprint in self._revoked_keys:
            raise CertificateRevoked("this key's certificate was revoked")

    def _check_secret(self, claim: Claim, digest: str | None) -> None:
        if claim.kind is CredentialKind.FACTORY and digest is None:
            return
        if secret_matches(claim.secret, digest):
            if digest is not None:
                self.throttle.success(claim.identity)
            return
        self.throttle.failure(claim.identity)
        raise AuthenticationRequired(f"wrong secret for appliance {claim.appliance_id}")

    def _check_distinct_name(self, appliance_id: str) -> None:
        """Refuse a new id, or one whose names are another known appliance's: one name, one appliance.

        An id stands for itself and ``<id>.local``, case-folded, without a trailing dot: ``Fridge``,
        ``fridge.`` and a registration ``fridge.local`` from an older release all stand for
        ``fridge.local``, so each would hold a certificate naming the others. Ids stay case-sensitive
        everywhere else (they are CNs, and keys of stored registrations). Only appliances the owner
        approved or pre-registered count: twins may wait side by side (a stranger's request must not
        lock a real appliance out), and the owner can approve one of them. The reason does not name
        the known appliance: a requester must not learn the ids the hub knows.
        """
        if appliance_id not in self._registrations:
            check_appliance_id(appliance_id)  # ids with dots are known from older releases only
        names = appliance_names(appliance_id)
        for other in self._registrations:
            if other != appliance_id and names & appliance_names(other):
                raise NameTaken(
                    f"appliance id {appliance_id!r} stands for the same DNS name as an appliance the hub"
                    " already knows (names ignore case and '.local'); choose another id"
                )

    def _check_room(self, identity: str, address: str | None) -> None:
        if len(self._pending) >= PENDING_MAX:
            raise Busy("too many requests are waiting for the owner", RETRY_AFTER_PENDING * 12)
        waiting = list(self._pending.values())
        # The two bounds below are the requester's doing (429); only the overall one is the server's (503).
        if sum(p.identity == identity for p in waiting) >= PENDING_MAX_PER_IDENTITY:
            raise TooManyRequests("too many keys are waiting for this appliance id", RETRY_AFTER_PENDING * 12)
        if address and sum(p.address == address for p in waiting) >= PENDING_MAX_PER_ADDRESS:
            raise TooManyRequests("too many requests are waiting from this address", RETRY_AFTER_PENDING * 12)

    def expire_pending(self) -> None:
        """Drop the requests that waited too long, or whose appliance stopped asking (the listener hears).

        The host runs this now and then; requests that arrive run it too. Until then an expired request
        is kept but no longer shown (:meth:`pending_requests`) nor decided.
        """
        self._expire(self._clock())

    def _expire(self, now: float) -> None:
        for pending in list(self._pending.values()):
            if _expired(pending, now):
                self._drop_pending(pending)

    def withdraw(self, request_id: str) -> None:
        """Drop a waiting request without deciding it (its appliance may ask again)."""
        if (pending := self._pending.get(request_id)) is not None:
            self._drop_pending(pending)

    def _drop_pending(self, pending: PendingEnrollment) -> None:
        if self._pending.pop(pending.request_id, None) is not None:
            self._listener.pending_removed(pending)

    # --- the owner's decisions --------------------------------------------------------------------

    def pending_requests(self) -> list[PendingEnrollment]:
        """Requests waiting for the owner, oldest first (expired ones left out, not dropped)."""
        now = self._clock()
        waiting = [pending for pending in self._pending.values() if not _expired(pending, now)]
        return sorted(waiting, key=lambda pending: pending.first_seen)

    def pending_request(self, request_id: str) -> PendingEnrollment:
        """One waiting request, or PendingRequestGone (for an expired one too, still kept or not)."""
        pending = self._pending.get(request_id)
        if pending is None or _expired(pending, self._clock()):
            raise PendingRequestGone("this request is no longer waiting for approval")
        return pending

    def review(self, request_id: str) -> Review:
        """A waiting request, the appliance paired under its id now, and how it may be approved.

        A first pairing: by PIN if the appliance sent one, or by comparing fingerprints. A new key
        for an appliance that is paired already must bring the proof it was paired with, so that the
        way it was paired is never weakened: its PIN (typed by the owner, matching both), or for one
        paired by fingerprint or factory certificate, the same identity compared by fingerprint.
        """
        pending = self.pending_request(request_id)
        paired = self._registrations.get(pending.appliance_id)
        return Review(pending, paired, _confirmations(pending, paired))

    def approve(
        self,
        request_id: str,
        *,
        pin: str | None = None,
        use_new_details: bool = False,
        known: ApplianceDetails | None = None,
    ) -> Registration:
        """Approve a pending request as :meth:`review` allows; its next retry gets the certificate.

        ``pin`` is what the owner typed; ``None`` means the owner confirmed the fingerprints match.
        A new key for a paired appliance keeps how it was paired (its PIN digest); its earlier keys
        stay approved. What is known about the appliance (``known``: what the host application
        shows for it, else what the paired appliance said) stays, unless ``use_new_details``.
        """
        self._expire(self._clock())  # a decision: an expired request is dropped, and the host hears
        pending = self.pending_request(request_id)
        try:
            self._check_distinct_name(pending.appliance_id)
        except NameTaken:
            self._drop_pending(pending)  # it cannot be approved while its twin is known
            raise
        review = self.review(request_id)
        paired = review.paired
        confirmation = Confirmation.FINGERPRINT if pin is None else Confirmation.PIN
        if confirmation not in review.confirmations:
            raise _refusal(review, confirmation)
        if pin is not None:
            self._check_owner_pin(pending, pin, paired)
        kept = known or (paired.details if paired is not None else None)
        details = pending.details if use_new_details or kept is None else kept
        if paired is not None:
            registration = replace(
                paired,
                keys=paired.keys | {pending.key_fingerprint},
                details=details,
                approved_at=self._clock(),
            )
        else:
            registration = Registration(
                appliance_id=pending.appliance_id,
                identity=pending.identity,
                kind=pending.kind,
                secret_digest=pending.secret_digest,
                keys=frozenset({pending.key_fingerprint}),
                details=details,
                approved_at=self._clock(),
            )
        self._registrations[registration.appliance_id] = registration
        self._drop_pending(pending)
        self._listener.approvals_changed()
        return registration

    def _check_owner_pin(self, pending: PendingEnrollment, pin: str, paired: Registration | None) -> None:
        """The PIN the owner typed must be the one the appliance sent, and the one it was paired with."""
        self.throttle.check(pending.identity, server_wide=False)
        typed = pin.strip()
        if not secret_matches(typed, pending.secret_digest):
            mismatch = "the PIN does not match the one the appliance sent"
        elif (
            paired is not None
            and paired.secret_digest is not None
            and not secret_matches(typed, paired.secret_digest)
        ):
            mismatch = f"the PIN does not match the one {paired.appliance_id} was paired with"
        else:
            return
        pending.owner_pin_failures += 1
        attempts_left = OWNER_PIN_ATTEMPTS - pending.owner_pin_failures
        if attempts_left > 0:
            self.throttle.failure(pending.identity)
            raise WrongPin(mismatch, attempts_left)
        self.throttle.lock(pending.identity)
        self._drop_pending(pending)
        until = self.throttle.locked_until(pending.identity) or self._clock()
        raise LockedOut(
            "too many wrong PINs; the appliance is locked for a while",
            max(1, int(until - self._clock())),
        )

    def reject(self, request_id: str) -> None:
        """The owner said no: this identity and key get 403 from now on."""
        pending = self._pending.get(request_id)
        self._rejected[request_id] = self._clock()
        self._rejected.move_to_end(request_id)
        while len(self._rejected) > REJECTED_MAX:
            self._rejected.popitem(last=False)
        if pending is not None:
            self._drop_pending(pending)
        self._listener.approvals_changed()

    def preregister(
        self, appliance_id: str, secret: str, details: ApplianceDetails | None = None
    ) -> Registration:
        """Let an appliance enroll unattended, once, with this id and secret (any key).

        Replaces an unused pre-registration (a new secret, say); an appliance that is paired, or
        used its pre-registration, is refused (NotAllowed): the secret must not admit another key.
        """
        check_appliance_id(appliance_id)
        if not secret:
            raise MalformedRequest("a pre-registration needs a secret")
        if len(secret) > MAX_SECRET_LENGTH:
            raise MalformedRequest(f"secret is longer than {MAX_SECRET_LENGTH} characters")
        self._check_distinct_name(appliance_id)
        if (current := self._registrations.get(appliance_id)) is not None and not current.preregistered:
            raise NotAllowed(f"appliance {appliance_id} is paired already; remove it first")
        registration = Registration(
            appliance_id=appliance_id,
            identity=f"id:{appliance_id}",
            kind=CredentialKind.PIN,
            secret_digest=digest_secret(secret),
            keys=frozenset(),
            details=details or ApplianceDetails(),
            approved_at=self._clock(),
            preregistered=True,
        )
        self._registrations[appliance_id] = registration
        self._listener.approvals_changed()
        # Requests already waiting under this id are the registration's to answer from now on: with
        # the secret they get their certificate at their next retry, without it they are refused.
        for pending in [p for p in self._pending.values() if p.identity == registration.identity]:
            self._drop_pending(pending)
        return registration

    def remove(self, appliance_id: str, revoked_keys: Iterable[str] = ()) -> None:
        """Forget a revoked appliance: neither its revoked keys nor its approved ones enroll again.

        After serverkeygen the request's key, which the owner approved, is not the certificate's.
        """
        registration = self._registrations.pop(appliance_id, None)
        self._revoked_keys.update(revoked_keys)
        if registration is not None:
            self._revoked_keys.update(registration.keys)
        for pending in list(self._pending.values()):
            if pending.appliance_id == appliance_id:
                self._drop_pending(pending)
        self._listener.approvals_changed()

    def registration(self, appliance_id: str) -> Registration | None:
        """The appliance's registration, if it is paired or pre-registered."""
        return self._registrations.get(appliance_id)

    def registrations(self) -> list[Registration]:
        """Every paired or pre-registered appliance."""
        return list(self._registrations.values())

    def locked(self, identity: str) -> bool:
        """Whether this identity is locked out now."""
        try:
            self.throttle.check(identity)
        except LockedOut:
            return True
        return False

    # --- persistence ------------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """Everything worth keeping across restarts (pending requests are not: appliances retry)."""
        return {
            "version": STATE_VERSION,
            "registrations": [_registration_to_dict(r) for r in self._registrations.values()],
            "rejected": dict(self._rejected),
            "revoked_keys": sorted(self._revoked_keys),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load what :meth:`export` produced."""
        self._registrations = {
            r.appliance_id: r for r in map(_registration_from_dict, state.get("registrations", []))
        }
        self._rejected = OrderedDict(state.get("rejected", {}))
        self._revoked_keys = set(state.get("revoked_keys", []))


def _confirmations(pending: PendingEnrollment, paired: Registration | None) -> tuple[Confirmation, ...]:
    if paired is None:  # a first pairing
        if pending.secret_digest is not None:
            return (Confirmation.PIN, Confirmation.FINGERPRINT)
        return (Confirmation.FINGERPRINT,)
    if paired.identity != pending.identity or paired.kind is not pending.kind:
        return ()  # not the proof it was paired with: never approvable in its place
    if paired.secret_digest is not None:
        return (Confirmation.PIN,)  # never by fingerprint alone: that would pass over its PIN
    return (Confirmation.FINGERPRINT,)


def _refusal(review: Review, confirmation: Confirmation) -> NotAllowed:
    """Why the owner cannot approve the request this way."""
    paired, pending = review.paired, review.pending
    if paired is None or (confirmation is Confirmation.PIN and pending.secret_digest is None):
        return NotAllowed("this appliance sent no PIN; compare the fingerprints instead")
    if review.confirmations:
        return ProofMismatch(
            f"{paired.appliance_id} was paired with its PIN: approve its new key with the PIN"
        )
    return ProofMismatch(
        f"{paired.appliance_id} is paired already and this request does not bring the proof it was "
        "paired with; reject it, or remove the appliance to pair it anew"
    )


def _merge(first: ApplianceDetails, second: ApplianceDetails) -> ApplianceDetails:
    return replace(
        first,
        name=first.name or second.name,
        model=first.model or second.model,
        manufacturer=first.manufacturer or second.manufacturer,
        serial_number=first.serial_number or second.serial_number,
    )


def _registration_to_dict(registration: Registration) -> dict[str, Any]:
    return {
        "appliance_id": registration.appliance_id,
        "identity": registration.identity,
        "kind": registration.kind.value,
        "secret_digest": registration.secret_digest,
        "keys": sorted(registration.keys),
        "details": {
            "name": registration.details.name,
            "model": registration.details.model,
            "manufacturer": registration.details.manufacturer,
            "serial_number": registration.details.serial_number,
        },
        "approved_at": registration.approved_at,
        "preregistered": registration.preregistered,
    }


def _registration_from_dict(data: dict[str, Any]) -> Registration:
    return Registration(
        appliance_id=data["appliance_id"],
        identity=data["identity"],
        kind=CredentialKind(data["kind"]),
        secret_digest=data["secret_digest"],
        keys=frozenset(data["keys"]),
        details=ApplianceDetails(**data["details"]),
        approved_at=data["approved_at"],
        preregistered=data["preregistered"],
    )


def _expired(pending: PendingEnrollment, now: float) -> bool:
    """Waiting too long, or its appliance stopped asking."""
    return now - pending.first_seen > PENDING_TTL or now - pending.last_seen > PENDING_IDLE_TTL
