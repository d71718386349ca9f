"""Who may enroll: pre-registrations, owner approvals, pending requests, rejections (no I/O).

The host application (Home Assistant, or the standalone command) drives it: it approves or rejects
pending requests, pre-registers appliances, expires requests nobody decided (:meth:`expire_pending`),
and persists :meth:`EnrollmentPolicy.export` whenever its :class:`PolicyListener` hears
``approvals_changed``. Reading (``pending_requests``, ``review``, ``registrations``) changes nothing.
The hub keeps no PIN: a registration holds a salt and an SRP verifier made from the PIN the owner
gave (``verifiers``); the slow work on them (making one, checking a PIN against one) is awaited from
the policy's :class:`~.verifiers.SrpWork`, the hub's SRP worker process.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
import contextlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any, NoReturn

from cryptography import x509

from .credentials import BasicCredentials
from .csr import ApplianceDetails, CertificateRequest, displayable
from .errors import (
    EXCHANGE_GONE_MARK,
    AuthenticationRequired,
    Busy,
    CertificateRevoked,
    EstError,
    ExchangeGone,
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
from .verifiers import PinVerifier, SrpWork, ThreadedSrp, check_pin

_LOGGER = logging.getLogger(__name__)
_ID_PREFIX = "id:"  # the identity of a claim by appliance id (see _identity)
STATE_VERSION = 2  # 2: registrations hold an SRP verifier ("verifier"), not a PIN digest ("secret_digest")


class CredentialKind(StrEnum):
    """How an appliance proves who it is on first enrollment."""

    PIN = "pin"  # HTTP Basic with the PIN printed on the appliance (or a one-time secret)
    PAKE = "pake"  # the PIN exchange (SRP-6a): the PIN never leaves the appliance (requests only)
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
        return cls(_identity(appliance_id), appliance_id, kind, credentials.password)

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
    unattended, and the pre-registration becomes the approval of that key alone. ``verifier`` is
    what the hub keeps of the PIN the appliance was paired with (None: paired without one);
    ``legacy_digest`` is the salted SHA-256 an older release kept instead, checked the old way until
    the PIN next proves itself, which replaces it with a verifier.
    """

    appliance_id: str
    identity: str
    kind: CredentialKind
    verifier: PinVerifier | None = field(repr=False)
    keys: frozenset[str]
    details: ApplianceDetails
    approved_at: float
    preregistered: bool = False
    legacy_digest: str | None = field(default=None, repr=False)

    @property
    def has_pin(self) -> bool:
        """Whether the appliance was paired (or pre-registered) with a PIN."""
        return self.verifier is not None or self.legacy_digest is not None


@dataclass(slots=True)
class PendingEnrollment:
    """A well-formed first-enrollment request waiting for the owner.

    ``secret_digest``: a salted SHA-256 of the secret the request sent in HTTP Basic, in memory only
    (pending requests are never stored), to compare its retries and the PIN the owner types with;
    ``verifier``: what the hub keeps of that secret once the request is approved. A request of the
    PIN exchange (kind PAKE) sends none: its ``verifier`` is made from the PIN the owner typed, and
    the appliance's next exchange proves it knows the same PIN (``exchange_failed``: its last one
    did not).
    """

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
    verifier: PinVerifier | None = field(default=None, repr=False)
    exchange_failed: bool = False
    decided_details: ApplianceDetails | None = None  # what the device is to show, decided with the PIN

    @property
    def pin_given(self) -> bool:
        """A request of the PIN exchange whose PIN the owner gave: it waits for its appliance now."""
        return self.kind is CredentialKind.PAKE and self.verifier is not None


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


@dataclass(frozen=True, slots=True)
class PinGiven:
    """The owner typed the PIN for a request of the PIN exchange: the appliance's next exchange proves it.

    Nothing is approved yet: the hub cannot tell a mistyped PIN until the exchange fails.
    """

    pending: PendingEnrollment


@dataclass(frozen=True, slots=True)
class ExchangeFailure:
    """A PIN exchange whose proof was wrong: counted like a wrong PIN, and told to the host application.

    ``pending``: the request whose PIN the owner typed, if the exchange proved that PIN; then
    ``attempts_left`` says how often the owner may type it again (0: the request is gone and the
    appliance locked out for a while). None for an exchange with a pre-registration's or a paired
    appliance's PIN.
    """

    appliance_id: str
    pending: PendingEnrollment | None = None
    attempts_left: int | None = None


# How the next PIN exchange of a request whose PIN the owner typed ended (:meth:`EnrollmentPolicy.
# next_exchange`): it proved the PIN (the appliance's registration), it did not, or None: the request
# stopped waiting another way (rejected, withdrawn, expired, pre-registered, removed).
type ExchangeOutcome = Registration | ExchangeFailure | None


def request_id_for(identity: str, key_fingerprint: str, *, exchange: bool = False) -> str:
    """A short stable handle for one (identity, key) request, for flows and the command line.

    A request of the PIN exchange has its own (``exchange``): it waits for the owner's PIN, not for
    the owner to check a PIN the appliance sent.
    """
    handle = f"{identity}\0{key_fingerprint}" + ("\0pake" if exchange else "")
    return hashlib.sha256(handle.encode()).hexdigest()[:20]


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

    def exchange_failed(self, failure: ExchangeFailure) -> None:
        """A PIN exchange's proof was wrong (the owner's typed PIN, if it was that one, is dropped)."""

    def exchange_approved(self, registration: Registration) -> None:
        """A PIN exchange proved the PIN the owner typed for a waiting request, which is now approved.

        Told after :meth:`pending_removed` and :meth:`approvals_changed` for that request.
        """

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
        work: SrpWork | None = None,
    ) -> None:
        self._clock = clock
        self._listener = listener or PolicyListener()
        # Test benches only: approve every well-formed request (not one of the PIN exchange, which
        # needs the owner's PIN, or a pre-registration's, to prove).
        self.auto_approve = auto_approve
        self.retry_after = RETRY_AFTER_PENDING  # seconds a waiting appliance is told to wait
        self.throttle = SecretThrottle(clock, keeps=self._holds_secret_for)
        self.work: SrpWork = work or ThreadedSrp()  # the service gives it its SRP worker process
        self._registrations: dict[str, Registration] = {}
        self._pending: dict[str, PendingEnrollment] = {}
        self._rejected: OrderedDict[str, float] = OrderedDict()
        self._revoked_keys: set[str] = set()
        # Identity -> the lock its slow PIN checks take turns on, and how many hold or wait for it.
        self._checking: dict[str, tuple[asyncio.Lock, int]] = {}
        # Identity -> (its verifier, a salted SHA-256 of the PIN that matched it), in memory only: a
        # client's repeated requests need not each cost the worker seven exponentiations.
        self._proven: dict[str, tuple[PinVerifier, str]] = {}
        # Request id -> who waits for the outcome of its next PIN exchange (:meth:`next_exchange`).
        self._outcome_waiters: dict[str, list[asyncio.Future[ExchangeOutcome]]] = {}

    # --- requests ---------------------------------------------------------------------------------

    async def authenticate(self, claim: Claim, request: CertificateRequest) -> None:
        """Raise AuthenticationRequired (401) or LockedOut (429) unless the claim's secret is right.

        Right means the one kept for it: by its request already waiting for the owner (whose first
        request passed the check below with it), else by its appliance's registration. Checked
        first, whatever the request asks (RFC 7235 §3.1): a refusal of what it asks (403) is for a
        requester that proved who it is. A claim nothing is kept for yet passes: its PIN is for the
        owner to check.
        """
        self.throttle.check(claim.identity)
        request_id = request_id_for(claim.identity, request.key_fingerprint)
        if request_id in self._pending:
            self._expire(self._clock())  # an expired request keeps no secret
            if (pending := self._pending.get(request_id)) is not None:
                self._check_secret(claim, pending.secret_digest, forgives=False)
                return
        registration = self._registrations.get(claim.appliance_id)
        if registration is not None and registration.identity == claim.identity:
            await self._check_registered_secret(claim, registration)

    async def _check_registered_secret(self, claim: Claim, registration: Registration) -> None:
        """The claim's secret against what the appliance's registration keeps of its PIN."""
        verifier = registration.verifier
        if verifier is None:  # paired without a PIN, or a digest kept by an older release
            self._check_secret(claim, registration.legacy_digest)
            if registration.legacy_digest is not None and claim.secret:
                await self._replace_legacy_digest(registration, claim.secret)
            return
        if not claim.secret:
            self._wrong_secret(claim)
        async with self.checking_pin(claim.identity):
            proven = self._proven.get(claim.identity)  # by this request's twin, maybe, while it waited
            if proven is not None and proven[0] == verifier and secret_matches(claim.secret, proven[1]):
                self.throttle.success(claim.identity)
                return
            if not await self.work.pin_matches(verifier, claim.secret):
                self._wrong_secret(claim)
        self.throttle.success(claim.identity)
        self._proven[claim.identity] = (verifier, digest_secret(claim.secret))

    async def _replace_legacy_digest(self, registration: Registration, pin: str) -> None:
        """An older release's PIN digest, just matched: keep a verifier of that PIN instead."""
        try:
            verifier = await self.work.make_verifier(registration.appliance_id, pin)
        except EstError as err:  # the worker is busy: the digest stays until the next time
            _LOGGER.debug("Kept %s's PIN digest for now (%s)", registration.appliance_id, err)
            return
        if self._registrations.get(registration.appliance_id) is registration:  # nothing changed meanwhile
            self._registrations[registration.appliance_id] = replace(
                registration, verifier=verifier, legacy_digest=None
            )
            _LOGGER.info("Replaced the PIN digest of %s by an SRP verifier", registration.appliance_id)
            self._listener.approvals_changed()

    @contextlib.asynccontextmanager
    async def checking_pin(self, identity: str) -> AsyncIterator[None]:
        """One slow check of an identity's PIN at a time, each after the lockout is checked again.

        Guesses sent at once would otherwise all be checked before the first wrong one is counted.
        """
        lock, waiting = self._checking.get(identity, (asyncio.Lock(), 0))
        self._checking[identity] = (lock, waiting + 1)
        try:
            async with lock:
                self.throttle.check(identity)
                yield
        finally:
            lock, waiting = self._checking[identity]
            if waiting > 1:
                self._checking[identity] = (lock, waiting - 1)
            else:
                del self._checking[identity]

    async def decide(self, claim: Claim, request: CertificateRequest, address: str | None) -> Decision:
        """Approve at once, keep waiting for the owner, or raise the reason to refuse.

        For a claim :meth:`authenticate` accepted; the caller may check more between the two.
        """
        key = request.key_fingerprint
        self.check_key(key)
        registration = self._registrations.get(claim.appliance_id)
        if (
            registration is not None
            and registration.identity == claim.identity
            and (approved := self._approve_registered(registration, request)) is not None
        ):
            return approved
        return await self._await_owner(claim, request, address, request_id_for(claim.identity, key))

    async def _await_owner(
        self, claim: Claim, request: CertificateRequest, address: str | None, request_id: str
    ) -> Decision:
        """A request nothing approves yet: it waits for the owner (or is refused).

        A new request that sent a PIN gets a verifier of it (the owner may approve it by comparing
        fingerprints: the appliance is then paired with the PIN it sent).
        """
        try:
            self._check_distinct_name(claim.appliance_id)
        except NameTaken:
            # Counted like a wrong secret: probing ids for twins costs what guessing PINs costs.
            self.throttle.failure(claim.identity)
            raise
        if (refusal := self._listener.refusal(claim.identity)) is not None:
            raise NotAllowed(refusal)
        if self.auto_approve and claim.kind is not CredentialKind.PAKE:
            return Approved(claim.appliance_id)
        if request_id in self._rejected:
            raise Rejected("the owner rejected this appliance")
        if (waiting := self._waiting(request_id, address)) is not None:
            return waiting
        self._check_room(claim.identity, address)
        verifier = None
        if claim.secret:
            verifier = await self.work.make_verifier(claim.appliance_id, claim.secret)
            if (waiting := self._waiting(request_id, address)) is not None:  # its twin came first
                return waiting
            self._check_room(claim.identity, address)
        now = self._clock()
        pending = PendingEnrollment(
            request_id=request_id,
            identity=claim.identity,
            appliance_id=claim.appliance_id,
            kind=claim.kind,
            secret_digest=digest_secret(claim.secret) if claim.secret else None,
            key_fingerprint=request.key_fingerprint,
            key_description=request.key_description,
            details=_merge(claim.details, request.details),
            address=address,
            first_seen=now,
            last_seen=now,
            factory_fingerprint=claim.factory_fingerprint,
            factory_issuer=claim.factory_issuer,
            verifier=verifier,
        )
        self._pending[request_id] = pending
        self._listener.pending_added(pending)
        return AwaitingOwner(pending, self.retry_after, new=True)

    def _waiting(self, request_id: str, address: str | None) -> AwaitingOwner | None:
        """The same request, waiting already: it keeps waiting (seen now, from ``address``)."""
        now = self._clock()
        self._expire(now)
        if (pending := self._pending.get(request_id)) is None:
            return None
        pending.last_seen = now
        pending.address = address
        return AwaitingOwner(pending, self.retry_after, new=False)

    def _approve_registered(self, registration: Registration, request: CertificateRequest) -> Approved | None:
        """Approve a key the registration covers, or None: the owner decides.

        It covers the keys the owner approved, and any first key of a pre-registration. A
        pre-registration is used once: it becomes the approval of the first key that used it.
        Decided here, before the certificate is signed, so that two keys sent at once cannot both
        pass; the same key asking again (its answer was lost) is approved as that key. A later key
        needs the owner (or renewal with the certificate). The appliance's request fills in what the
        owner did not type (model, manufacturer, serial number); what the owner typed stays.
        """
        if registration.preregistered:
            self._registrations[registration.appliance_id] = replace(
                registration,
                keys=frozenset({request.key_fingerprint}),
                details=_merge(registration.details, request.details),
                preregistered=False,
            )
            self._listener.approvals_changed()
        elif request.key_fingerprint not in registration.keys:
            return None
        return Approved(registration.appliance_id)

    def check_key(self, key_fingerprint: str) -> None:
        """Refuse a key whose certificate was revoked (re-enrollment uses this too)."""
        if key_fingerprint in self._revoked_keys:
            raise CertificateRevoked(
                "this key's certificate was revoked; the appliance needs a new key and the owner's approval"
            )

    def _holds_secret_for(self, identity: str) -> bool:
        """Whether the identity is a registered appliance's (its PIN is what a guesser is after)."""
        registration = self._registrations.get(identity.removeprefix(_ID_PREFIX))
        return registration is not None and registration.identity == identity

    def _check_secret(self, claim: Claim, digest: str | None, *, forgives: bool = True) -> None:
        """The claim's secret against a digest (None: no secret), in constant time.

        A right one forgives the identity's wrong secrets only if it is one the hub keeps for the
        appliance (``forgives``): a waiting request's own was chosen by whoever sent it, and its
        retries must not undo a lockout earned guessing the appliance's PIN.
        """
        if claim.kind is CredentialKind.FACTORY and digest is None:
            return
        if not secret_matches(claim.secret, digest):
            self._wrong_secret(claim)
        if digest is not None and forgives:
            self.throttle.success(claim.identity)

    def _wrong_secret(self, claim: Claim) -> NoReturn:
        self.throttle.failure(claim.identity)
        raise AuthenticationRequired(f"wrong secret for appliance {claim.appliance_id}")

    # --- the PIN exchange -------------------------------------------------------------------------

    async def exchange_verifier(
        self, appliance_id: str, request: CertificateRequest, address: str | None
    ) -> PinVerifier | AwaitingOwner:
        """The verifier an exchange's start is challenged with, or the request waits for the owner.

        A pre-registration's, a paired appliance's for a key the owner approved, or the one made
        from the PIN the owner typed for this very request. Without one the request waits (kind
        PAKE): the owner types the PIN printed on the appliance.
        """
        identity = _identity(appliance_id)
        self.throttle.check(identity)
        key = request.key_fingerprint
        self.check_key(key)
        registration = self._registered_by_pin(appliance_id)
        if (
            registration is not None
            and registration.verifier is not None
            and (registration.preregistered or key in registration.keys)
        ):
            return registration.verifier
        request_id = request_id_for(identity, key, exchange=True)
        now = self._clock()
        self._expire(now)
        if (pending := self._pending.get(request_id)) is not None and pending.verifier is not None:
            pending.last_seen = now
            pending.address = address
            return pending.verifier
        claim = Claim(identity, appliance_id, CredentialKind.PAKE)
        decision = await self._await_owner(claim, request, address, request_id)
        assert isinstance(decision, AwaitingOwner)  # noqa: S101 - never auto-approved
        return decision

    @contextlib.asynccontextmanager
    async def proving(self, appliance_id: str) -> AsyncIterator[None]:
        """Around the check of an exchange's proof: LockedOut while locked out, one check at a time."""
        identity = _identity(appliance_id)
        self.throttle.check(identity)
        async with self.checking_pin(identity):
            yield

    def exchange_tampered(self, appliance_id: str) -> None:
        """An exchange that proved the PIN sent another request than it started with (a relay): counted."""
        self.throttle.failure(_identity(appliance_id))

    def _registered_by_pin(self, appliance_id: str) -> Registration | None:
        """The appliance's registration, if it is one by id and PIN (not a factory certificate's)."""
        registration = self._registrations.get(appliance_id)
        return (
            registration
            if registration is not None and registration.identity == _identity(appliance_id)
            else None
        )

    def exchange_proven(self, appliance_id: str) -> None:
        """An exchange's proof was right: earlier wrong PINs are forgiven."""
        self.throttle.success(_identity(appliance_id))

    def exchange_failed(
        self, appliance_id: str, key_fingerprint: str, verifier: PinVerifier
    ) -> ExchangeFailure:
        """An exchange's proof was wrong: count it like a wrong PIN and tell the host application.

        If it proved the PIN the owner typed for a waiting request, that PIN is dropped (the
        request waits for the owner again): the owner may have mistyped it, and may type it again,
        up to the attempts the dialog allows.
        """
        identity = _identity(appliance_id)
        pending = self._pending.get(request_id_for(identity, key_fingerprint, exchange=True))
        if pending is None or pending.verifier != verifier:
            self.throttle.failure(identity)
            failure = ExchangeFailure(appliance_id)
        else:
            pending.verifier = None
            pending.exchange_failed = True
            waiting = self._outcome_waiters.pop(pending.request_id, [])  # before a lockout drops it
            failure = ExchangeFailure(appliance_id, pending, self._owner_pin_failed(pending))
            _tell(waiting, failure)
        self._listener.exchange_failed(failure)
        return failure

    def approve_exchanged(
        self, appliance_id: str, request: CertificateRequest, verifier: PinVerifier
    ) -> Approved:
        """An exchange proved the PIN and bound the request's key: approve that key, if still right.

        A pre-registration is used by it; the PIN the owner typed for a waiting request approves
        that request. ExchangeGone if the hub's PIN for the appliance changed since the start.
        """
        identity = _identity(appliance_id)
        key = request.key_fingerprint
        self.check_key(key)
        registration = self._registered_by_pin(appliance_id)
        if (
            registration is not None
            and registration.verifier == verifier
            and (approved := self._approve_registered(registration, request)) is not None
        ):
            return approved
        self._expire(self._clock())
        pending = self._pending.get(request_id_for(identity, key, exchange=True))
        if pending is None or pending.verifier is None or pending.verifier != verifier:
            raise ExchangeGone(
                "the PIN this exchange proved is no longer the hub's for this appliance; "
                f"{EXCHANGE_GONE_MARK}"
            )
        if registration is not None:  # another of its keys was paired meanwhile: the owner decides anew
            self._drop_pending(pending)
            raise NotAllowed(
                f"appliance {appliance_id} was paired meanwhile; its owner approves this key anew"
            )
        registration = Registration(
            appliance_id=appliance_id,
            identity=identity,
            kind=CredentialKind.PIN,
            verifier=verifier,
            keys=frozenset({key}),
            details=pending.decided_details or pending.details,
            approved_at=self._clock(),
        )
        self._registrations[appliance_id] = registration
        waiting = self._outcome_waiters.pop(pending.request_id, [])
        self._drop_pending(pending)
        _tell(waiting, registration)
        self._listener.approvals_changed()
        self._listener.exchange_approved(registration)
        return Approved(appliance_id)

    def next_exchange(self, request_id: str) -> asyncio.Future[ExchangeOutcome]:
        """How the next PIN exchange of a request whose PIN the owner gave ends, once it does.

        For the owner's dialog (or command) that waits after :class:`PinGiven`; it may cancel the
        future when it stops waiting. Resolved at once with None if the request is not waiting.
        """
        future: asyncio.Future[ExchangeOutcome] = asyncio.get_running_loop().create_future()
        if request_id not in self._pending:
            future.set_result(None)
            return future
        waiting = self._outcome_waiters.setdefault(request_id, [])
        waiting.append(future)
        future.add_done_callback(lambda _: self._forget_waiter(request_id, future))
        return future

    def _forget_waiter(self, request_id: str, future: asyncio.Future[ExchangeOutcome]) -> None:
        waiting = self._outcome_waiters.get(request_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._outcome_waiters.pop(request_id, None)

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
            _tell(self._outcome_waiters.pop(pending.request_id, []), None)
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

    async def approve(
        self,
        request_id: str,
        *,
        pin: str | None = None,
        use_new_details: bool = False,
        known: ApplianceDetails | None = None,
    ) -> Registration | PinGiven:
        """Approve a pending request as :meth:`review` allows; its next retry gets the certificate.

        ``pin`` is what the owner typed; ``None`` means the owner confirmed the fingerprints match.
        The hub keeps a verifier made from the PIN the owner typed, never the PIN. A request of the PIN
        exchange is not approved yet (:class:`PinGiven`): its next exchange proves the PIN, and only
        then is its key approved. A new key for a paired appliance keeps how it was paired (its PIN's
        verifier); its earlier keys stay approved. What is known about the appliance (``known``: what
        the host application shows for it, else what the paired appliance said) stays, unless
        ``use_new_details``.
        """
        self._expire(self._clock())  # a decision: an expired request is dropped, and the host hears
        pending, review = self._approvable(request_id, pin)
        paired = review.paired
        exchange = pending.kind is CredentialKind.PAKE
        verifier = None if exchange else pending.verifier  # the PIN the request sent, if any
        if pin is not None:
            typed = pin.strip()
            await self._check_owner_pin(pending, typed, paired)
            if exchange and (paired is None or paired.verifier is None):
                check_pin(typed)
                verifier = await self.work.make_verifier(pending.appliance_id, typed)
            # Nothing the owner saw may have changed while the PIN was checked.
            current, now_review = self._approvable(request_id, pin)
            if current is not pending or now_review.paired is not paired:
                raise PendingRequestGone("this request changed while its PIN was checked; open it again")
        kept = known or (paired.details if paired is not None else None)
        details = pending.details if use_new_details or kept is None else kept
        if exchange and paired is None:
            pending.verifier = verifier
            pending.exchange_failed = False
            pending.decided_details = details
            return PinGiven(pending)
        if paired is not None:
            registration = replace(
                paired,
                keys=paired.keys | {pending.key_fingerprint},
                details=details,
                approved_at=self._clock(),
                preregistered=False,
            )
            if paired.verifier is None and paired.legacy_digest is not None and verifier is not None:
                # The PIN it was paired with, digested by an older release: the owner typed it.
                registration = replace(registration, verifier=verifier, legacy_digest=None)
        else:
            registration = Registration(
                appliance_id=pending.appliance_id,
                identity=pending.identity,
                kind=pending.kind,
                verifier=verifier,
                keys=frozenset({pending.key_fingerprint}),
                details=details,
                approved_at=self._clock(),
            )
        self._registrations[registration.appliance_id] = registration
        self._drop_pending(pending)
        self._listener.approvals_changed()
        return registration

    def _approvable(self, request_id: str, pin: str | None) -> tuple[PendingEnrollment, Review]:
        """The waiting request and its review, if the owner may approve it this way; else the reason."""
        pending = self.pending_request(request_id)
        try:
            self._check_distinct_name(pending.appliance_id)
        except NameTaken:
            self._drop_pending(pending)  # it cannot be approved while its twin is known
            raise
        review = self.review(request_id)
        confirmation = Confirmation.FINGERPRINT if pin is None else Confirmation.PIN
        if confirmation not in review.confirmations:
            raise _refusal(review, confirmation)
        return pending, review

    async def _check_owner_pin(
        self, pending: PendingEnrollment, pin: str, paired: Registration | None
    ) -> None:
        """The PIN the owner typed must be the one the appliance sent, and the one it was paired with.

        A request of the PIN exchange sent none: its exchange checks the PIN later.
        """
        self.throttle.check(pending.identity, server_wide=False)
        if pending.kind is not CredentialKind.PAKE and not secret_matches(pin, pending.secret_digest):
            mismatch = "the PIN does not match the one the appliance sent"
        elif paired is not None and not await self._paired_with(paired, pin):
            mismatch = f"the PIN does not match the one {paired.appliance_id} was paired with"
        else:
            return
        if (attempts_left := self._owner_pin_failed(pending)) > 0:
            raise WrongPin(mismatch, attempts_left)
        until = self.throttle.locked_until(pending.identity) or self._clock()
        raise LockedOut(
            "too many wrong PINs; the appliance is locked for a while",
            max(1, int(until - self._clock())),
        )

    async def _paired_with(self, paired: Registration, pin: str) -> bool:
        """Whether ``pin`` is the PIN the appliance was paired with (True if it was paired without one)."""
        if paired.verifier is not None:
            return await self.work.pin_matches(paired.verifier, pin)
        return paired.legacy_digest is None or secret_matches(pin, paired.legacy_digest)

    def _owner_pin_failed(self, pending: PendingEnrollment) -> int:
        """Count a wrong PIN the owner typed for a request: the attempts left (0: dropped, locked)."""
        pending.owner_pin_failures += 1
        attempts_left = OWNER_PIN_ATTEMPTS - pending.owner_pin_failures
        if attempts_left > 0:
            self.throttle.failure(pending.identity)
        else:
            self.throttle.lock(pending.identity)
            self._drop_pending(pending)
        return max(attempts_left, 0)

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

    async def preregister(
        self, appliance_id: str, secret: str, details: ApplianceDetails | None = None
    ) -> Registration:
        """Let an appliance enroll unattended, once, with this id and secret (any key).

        Replaces an unused pre-registration (a new secret, say); an appliance that is paired, or
        used its pre-registration, is refused (NotAllowed): the secret must not admit another key.
        The hub keeps a verifier made from the secret: the appliance proves it in an exchange, or
        sends it in HTTP Basic.
        """
        self._check_preregistration(appliance_id, secret)
        verifier = await self.work.make_verifier(appliance_id, secret)
        self._check_preregistration(appliance_id, secret)  # again: the owner may have acted meanwhile
        registration = Registration(
            appliance_id=appliance_id,
            identity=_identity(appliance_id),
            kind=CredentialKind.PIN,
            verifier=verifier,
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

    def _check_preregistration(self, appliance_id: str, secret: str) -> None:
        check_appliance_id(appliance_id)
        if not secret:
            raise MalformedRequest("a pre-registration needs a secret")
        check_pin(secret)
        self._check_distinct_name(appliance_id)
        if (current := self._registrations.get(appliance_id)) is not None and not current.preregistered:
            raise NotAllowed(f"appliance {appliance_id} is paired already; remove it first")

    def remove(self, appliance_id: str, revoked_keys: Iterable[str] = ()) -> None:
        """Forget a revoked appliance: neither its revoked keys nor its approved ones enroll again.

        After serverkeygen the request's key, which the owner approved, is not the certificate's.
        """
        registration = self._registrations.pop(appliance_id, None)
        self._revoked_keys.update(revoked_keys)
        if registration is not None:
            self._revoked_keys.update(registration.keys)
            self._proven.pop(registration.identity, None)
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
        if pending.kind is CredentialKind.PAKE:
            return (Confirmation.PIN,)  # its exchange needs the PIN: a fingerprint proves nothing to it
        if pending.secret_digest is not None:
            return (Confirmation.PIN, Confirmation.FINGERPRINT)
        return (Confirmation.FINGERPRINT,)
    if paired.identity != pending.identity or _proof(paired.kind) is not _proof(pending.kind):
        return ()  # not the proof it was paired with: never approvable in its place
    if paired.has_pin:
        return (Confirmation.PIN,)  # never by fingerprint alone: that would pass over its PIN
    return (Confirmation.FINGERPRINT,)


def _proof(kind: CredentialKind) -> CredentialKind:
    """What a request of this kind proves: the exchange proves the PIN, as HTTP Basic sends it."""
    return CredentialKind.PIN if kind is CredentialKind.PAKE else kind


def _refusal(review: Review, confirmation: Confirmation) -> NotAllowed:
    """Why the owner cannot approve the request this way."""
    paired, pending = review.paired, review.pending
    exchange = pending.kind is CredentialKind.PAKE
    if exchange and (paired is None or review.confirmations):
        return NotAllowed(
            "this appliance pairs through the PIN exchange: approve it with the PIN printed on it"
        )
    if paired is None or (
        confirmation is Confirmation.PIN and not exchange and pending.secret_digest is None
    ):
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
    # No "secret_digest" key but an older release's own: a release from before verifiers fails to
    # load these approvals rather than take a registration with a verifier for one without a PIN.
    legacy = {"secret_digest": registration.legacy_digest} if registration.legacy_digest is not None else {}
    return {
        "appliance_id": registration.appliance_id,
        "identity": registration.identity,
        "kind": registration.kind.value,
        "verifier": registration.verifier.to_dict() if registration.verifier is not None else None,
        **legacy,
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
        verifier=PinVerifier.from_dict(verifier) if (verifier := data.get("verifier")) else None,
        legacy_digest=data.get("secret_digest"),
        keys=frozenset(data["keys"]),
        details=ApplianceDetails(**data["details"]),
        approved_at=data["approved_at"],
        preregistered=data["preregistered"],
    )


def _tell(waiting: list[asyncio.Future[ExchangeOutcome]], outcome: ExchangeOutcome) -> None:
    """Resolve the futures of those who wait for an exchange's outcome (those that still wait)."""
    for future in waiting:
        if not future.done():
            future.set_result(outcome)


def _identity(appliance_id: str) -> str:
    """The identity of a claim by appliance id and PIN (HTTP Basic, or the PIN exchange)."""
    return f"{_ID_PREFIX}{appliance_id}"


def _expired(pending: PendingEnrollment, now: float) -> bool:
    """Waiting too long, or its appliance stopped asking."""
    return now - pending.first_seen > PENDING_TTL or now - pending.last_seen > PENDING_IDLE_TTL
