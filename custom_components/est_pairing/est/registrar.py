"""The EST operations over one household CA: what the HTTP layer calls (the CA interface of RFC 7030).

A request flows one way: the server parses it (wire), the registrar asks the enrollment policy
whether the requester is who it says (its secret), the issuance policy what it may get, and the
enrollment policy whether it may enroll; the CA signs, the ledger records, and only then does the
certificate go back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import math

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from .ca import HouseholdCA
from .credentials import BasicCredentials
from .csr import CertificateRequest, CsrAttribute, inspect_request
from .errors import (
    AuthenticationRequired,
    CAFailure,
    CertificateExpired,
    CertificateRevoked,
    NotAllowed,
    TooManyRequests,
)
from .fingerprints import public_key_fingerprint
from .issuance import Grant, IssuancePolicy
from .ledger import CertificateRecord, Ledger, Supersession
from .limits import CRL_VALIDITY_DAYS, MAX_VALID_CERTIFICATES, RENEWED_RENEWAL_FRACTION
from .policy import AwaitingOwner, Claim, CredentialKind, EnrollmentPolicy
from .verifiers import PinVerifier

_BACKDATE = timedelta(minutes=5)
_SECP256R1 = x509.ObjectIdentifier("1.2.840.10045.3.1.7")
_ECDSA_WITH_SHA256 = x509.ObjectIdentifier("1.2.840.10045.4.3.2")
_CRL_SECONDS_BITS = 40
# What a first enrollment presenting a household certificate that cannot renew is told to do instead.
_PAIR_AGAIN = "; to pair again, connect without it and enroll a new key with the PIN or factory certificate"


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end of a request, as TLS and HTTP established it."""

    address: str | None
    credentials: BasicCredentials | None = None
    certificate_chain: tuple[x509.Certificate, ...] = ()  # verified by TLS, leaf first
    # False on a resumed TLS session whose chain is no longer known: the leaf alone, verified then.
    chain_complete: bool = True


@dataclass(frozen=True, slots=True)
class _SignedCRL:
    """The CRL last signed, kept until a revocation or half its validity makes it stale."""

    revocations: int
    signed_at: datetime
    der: bytes


def _crl_number(revocations: int, signed_at: datetime) -> int:
    """The CRL number: the revocations so far, then the second the CRL was signed.

    RFC 5280 §5.2.3: relying parties tell which CRL supersedes another by this number alone, so every
    CRL re-signed with new dates (half-way through its validity, or after a restart) needs a larger
    one than the last, not the same. Two CRLs share a number only if they have the same entries and
    dates. 40 bits of seconds last until the year 36812; the number stays far below 20 octets.
    """
    return revocations << _CRL_SECONDS_BITS | int(signed_at.timestamp())


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate recorded in the ledger and ready to hand out."""

    certificate: x509.Certificate
    record: CertificateRecord


@dataclass(frozen=True, slots=True)
class IssuedWithKey:
    """A server-generated key and its certificate (serverkeygen)."""

    issued: Issued
    private_key: CertificateIssuerPrivateKeyTypes

    def private_key_der(self) -> bytes:
        """Unencrypted PKCS#8 DER (never PKCS#1), as §4.4.2 carries it."""
        return self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


type Outcome = Issued | IssuedWithKey


@dataclass(slots=True)
class _Answer:
    """A certificate handed out (or being made), handed out again to a retry of its request."""

    key_fingerprint: str  # the request's key (after serverkeygen, not the certificate's)
    grant: Grant
    keygen: bool
    renews: int | None  # the serial of the certificate a renewal presented
    outcome: asyncio.Future[Outcome | None]  # None: it failed, and the retry makes its own

    def issued(self) -> Issued | None:
        """The certificate, once made."""
        if not self.outcome.done() or (outcome := self.outcome.result()) is None:
            return None
        return outcome.issued if isinstance(outcome, IssuedWithKey) else outcome


class Registrar:
    """Enroll, re-enroll, generate keys, publish the CA and its CRL."""

    def __init__(
        self,
        *,
        ca: HouseholdCA,
        ledger: Ledger,
        policy: EnrollmentPolicy,
        issuance: IssuancePolicy,
        manufacturer_cas: Sequence[x509.Certificate] = (),
        crl_url: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        approvals_saved: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.ca = ca
        self.ledger = ledger
        self.policy = policy
        self.issuance = issuance
        self.manufacturer_cas = tuple(manufacturer_cas)
        self.crl_url = crl_url
        self._now = now
        # Awaited before a certificate is issued on an approval: the approvals the host application
        # stores must say what the policy decided (a pre-registration used, say) before the answer.
        self._approvals_saved = approvals_saved or _nothing_to_save
        self._crl: _SignedCRL | None = None
        # Appliance id -> revocations begun, and those still being written: a request decided before
        # a revocation, or while one is written, gets no certificate (see _sign_and_record).
        self._revocations: dict[str, int] = {}
        self._revoking: dict[str, int] = {}
        # Appliance id -> the answers for its valid certificates (and those being made), handed out
        # again to a retry of their request; at most MAX_VALID_CERTIFICATES and the ones in flight.
        self._answers: dict[str, list[_Answer]] = {}

    # --- unauthenticated ----------------------------------------------------------------------------

    def ca_certificates(self) -> list[x509.Certificate]:
        """What /cacerts returns: the household root."""
        return [self.ca.certificate]

    def csr_attributes(self) -> list[CsrAttribute]:
        """What /csrattrs returns: bare OIDs only (some clients understand nothing else)."""
        return [CsrAttribute(_SECP256R1), CsrAttribute(_ECDSA_WITH_SHA256)]

    def crl(self) -> bytes:
        """The current CRL (DER), re-signed after a revocation or half-way through its validity."""
        now = self._now()
        revocations = self.ledger.crl_number
        if (
            self._crl is None
            or self._crl.revocations != revocations
            or now - self._crl.signed_at > timedelta(days=CRL_VALIDITY_DAYS / 2)
        ):
            number = _crl_number(revocations, now)
            crl = self.ca.sign_crl(self.ledger.revoked(), crl_number=number, now=now)
            self._crl = _SignedCRL(revocations, now, crl.public_bytes(serialization.Encoding.DER))
        return self._crl.der

    # --- enrollment ---------------------------------------------------------------------------------

    async def enroll(self, peer: Peer, csr: x509.CertificateSigningRequest) -> Issued | AwaitingOwner:
        """Simpleenroll (§4.2.1): first enrollment, which the owner approves."""
        outcome = await self._first_enrollment(peer, csr, keygen=False)
        assert not isinstance(outcome, IssuedWithKey)  # noqa: S101 - without keygen
        return outcome

    async def reenroll(self, peer: Peer, csr: x509.CertificateSigningRequest) -> Issued:
        """Simplereenroll (§4.2.2): renew with the current certificate; rekey allowed.

        A certificate renews once: the renewal supersedes it (it stays valid while the appliance
        switches over, until a later certificate pushes it out), and only the same renewal asked
        again gets an answer, that same one. A certificate that itself came from a renewal renews
        once a quarter of its lifetime has passed (``429`` before): appliances renew at two thirds,
        and a chain of renewals with fresh keys cannot grow the ledger faster than that.
        """
        request = inspect_request(csr)
        if not peer.certificate_chain:
            raise AuthenticationRequired(
                "re-enrollment needs the current certificate as the TLS client certificate"
            )
        current = peer.certificate_chain[0]
        if not self.ca.issued(current):
            raise NotAllowed("re-enrollment needs a certificate issued by this household CA")
        now = self._now()
        record = self._valid_record(current, now)
        self.policy.check_key(request.key_fingerprint)
        grant = self.issuance.grant_renewal(request, current)
        also: tuple[int, ...] = ()
        if (successor := self._successor(record)) is not None:
            serial, key_fingerprint = successor
            if key_fingerprint != request.key_fingerprint:
                raise NotAllowed("this certificate was renewed already: renew with the newer certificate")
            # The same renewal again, its answer lost: that answer if it is still known, else (after a
            # restart) one in place of it.
            also = (serial,) if serial is not None else ()
        else:
            self._check_renewal_rate(record, now)
        issued = await self._answer(
            request, grant, record.appliance_id, renews=record.serial_number, also=also
        )
        assert isinstance(issued, Issued)  # noqa: S101 - _answer without keygen
        return issued

    def _successor(self, record: CertificateRecord) -> tuple[int | None, str] | None:
        """The certificate that renewed this one, or the renewal being made: (serial, key fingerprint).

        The serial is None while it is being made.
        """
        for answer in self._answers.get(record.appliance_id, ()):
            if answer.renews == record.serial_number and not answer.outcome.done():
                return None, answer.key_fingerprint
        if record.renewed_by is None:
            return None
        successor = self.ledger.get(record.renewed_by)
        if successor is None or successor.revoked:
            raise NotAllowed("this certificate was renewed already: renew with the newer certificate")
        return successor.serial_number, successor.key_fingerprint

    def _check_renewal_rate(self, record: CertificateRecord, now: datetime) -> None:
        """A certificate from a renewal renews once a quarter of its lifetime has passed."""
        if record.renews is None:
            return  # one renewal right after enrolling is free (some EST clients do that)
        earliest = record.not_before + (record.not_after - record.not_before) * RENEWED_RENEWAL_FRACTION
        if (wait := earliest - now.timestamp()) > 0:
            moment = datetime.fromtimestamp(earliest, UTC).isoformat(timespec="seconds")
            raise TooManyRequests(
                f"this certificate came from a renewal and renews from {moment} (a quarter of its lifetime)",
                math.ceil(wait),
            )

    async def serverkeygen(
        self, peer: Peer, csr: x509.CertificateSigningRequest
    ) -> IssuedWithKey | AwaitingOwner:
        """Serverkeygen (§4.4): like enroll, but the server makes the key.

        RSA-2048 when the request's own key is RSA, else EC P-256; the request's key only proves
        possession.

        Only for a claim that carries something a copy of the request cannot: a secret (PIN or
        pre-registration secret) or a factory certificate on this TLS connection. A request's
        signature proves possession of its key once; anyone holding a copy of an approved request
        could replay it here and receive a fresh key and certificate for that appliance. A claim
        confirmed by fingerprint has no secret, so it must enroll its own key (simpleenroll), and
        the owner's approval then covers the very key the certificate carries.
        """
        outcome = await self._first_enrollment(peer, csr, keygen=True)
        assert not isinstance(outcome, Issued)  # noqa: S101 - with keygen
        return outcome

    async def _first_enrollment(
        self, peer: Peer, csr: x509.CertificateSigningRequest, *, keygen: bool
    ) -> Outcome | AwaitingOwner:
        """Enroll or serverkeygen: the same checks and decision; only where the key comes from differs."""
        request = inspect_request(csr)
        claim = self._claim(peer)
        await self.policy.authenticate(claim, request)  # a wrong secret is a 401 whatever it asks
        if keygen and claim.kind is CredentialKind.FINGERPRINT:
            raise NotAllowed(
                "server key generation needs a PIN, a pre-registration secret or a factory "
                "certificate; without one the appliance must enroll its own key (simpleenroll)"
            )
        grant = self.issuance.grant(request, claim.appliance_id)  # refuse before asking the owner
        decision = await self.policy.decide(claim, request, peer.address)
        if isinstance(decision, AwaitingOwner):
            return decision
        await self._save_approvals(decision.appliance_id)
        return await self._answer(request, grant, decision.appliance_id, keygen=keygen)

    # --- the PIN exchange (its messages and arithmetic are the server's, in ``pairing``) ---------------

    async def exchange_verifier(
        self, appliance_id: str, request: CertificateRequest, address: str | None
    ) -> PinVerifier | AwaitingOwner:
        """An exchange's start: the verifier to challenge it with, or it waits for the owner.

        What the request asks is checked first, as for simpleenroll: refused before the owner sees it.
        """
        self.issuance.grant(request, appliance_id)
        return await self.policy.exchange_verifier(appliance_id, request, address)

    async def enroll_exchanged(
        self, appliance_id: str, request: CertificateRequest, verifier: PinVerifier
    ) -> Issued:
        """An exchange proved the PIN and bound its request: issue, through the usual path.

        Recorded in the ledger before the caller answers; a repeat of the same request (its answer was
        lost, and the appliance paired again) gets the same certificate, as for simpleenroll.
        """
        grant = self.issuance.grant(request, appliance_id)
        decision = self.policy.approve_exchanged(appliance_id, request, verifier)
        await self._save_approvals(decision.appliance_id)
        issued = await self._answer(request, grant, decision.appliance_id)
        assert isinstance(issued, Issued)  # noqa: S101 - _answer without keygen
        return issued

    async def revoke_appliance(
        self,
        appliance_id: str,
        *,
        reason: x509.ReasonFlags = x509.ReasonFlags.cessation_of_operation,
    ) -> list[CertificateRecord]:
        """Revoke every certificate of an appliance and forget its registration.

        Requests decided before it, or while it is written, get no certificate: once it returns, none
        of the appliance's certificates is valid, including any recorded while it was written.
        """
        self._revocations[appliance_id] = self._revocations.get(appliance_id, 0) + 1
        self._revoking[appliance_id] = self._revoking.get(appliance_id, 0) + 1
        self._answers.pop(appliance_id, None)  # those in flight get no certificate (see _sign_and_record)
        try:
            records: list[CertificateRecord] = []
            ledger = self.ledger
            while revoked := await ledger.revoke_appliance(appliance_id, reason=reason, when=self._now()):
                records += revoked  # again: a certificate may have been recorded meanwhile
            self.policy.remove(
                appliance_id, [r.key_fingerprint for r in self.ledger.for_appliance(appliance_id)]
            )
        finally:
            if (left := self._revoking[appliance_id] - 1) > 0:
                self._revoking[appliance_id] = left
            else:
                del self._revoking[appliance_id]
        return records

    # --- helpers ------------------------------------------------------------------------------------

    def _claim(self, peer: Peer) -> Claim:
        if peer.certificate_chain:
            leaf = peer.certificate_chain[0]
            if self.ca.issued(leaf):
                # Renewing is the advice only for a certificate that can renew.
                self._valid_record(leaf, self._now(), advice=_PAIR_AGAIN)
                raise NotAllowed("already enrolled: renew with simplereenroll")
            if not peer.chain_complete:
                raise AuthenticationRequired(
                    "this TLS session was resumed and its factory certificate chain is no longer"
                    " known: connect again with a full handshake"
                )
            anchor = peer.certificate_chain[-1]
            if anchor not in self.manufacturer_cas:
                raise NotAllowed("the client certificate is not from a configured manufacturer")
            now = self._now()
            if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
                raise NotAllowed("the factory certificate is not valid now")
            # TLS leaves time checks to this layer (for the specific answer above): the manufacturer's
            # intermediates and root must be valid now too.
            for issuer in peer.certificate_chain[1:]:
                if not issuer.not_valid_before_utc <= now < issuer.not_valid_after_utc:
                    raise NotAllowed("a manufacturer CA above the factory certificate is not valid now")
            return Claim.from_factory_certificate(leaf)
        if peer.credentials is None:
            raise AuthenticationRequired(
                "authenticate with the appliance id and PIN (HTTP Basic) or a factory certificate"
            )
        return Claim.from_basic(peer.credentials)

    def _valid_record(
        self, certificate: x509.Certificate, now: datetime, *, advice: str = ""
    ) -> CertificateRecord:
        """The ledger record of a certificate this CA issued, if it is valid now.

        If not, the refusal says why (a re-enrollment's as it always did; a first enrollment adds
        ``advice``): only a valid certificate can renew.
        """
        record = self.ledger.get(certificate.serial_number)
        if record is None:
            raise NotAllowed(f"the presented certificate is not in this CA's ledger{advice}")
        if record.revoked:
            superseded = record.revocation_reason == x509.ReasonFlags.superseded.value
            why = ": newer ones superseded it" if superseded else ""
            raise CertificateRevoked(f"the presented certificate has been revoked{why}{advice}")
        if not certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc:
            raise CertificateExpired(f"the presented certificate has expired{advice or '; enroll again'}")
        return record

    async def _save_approvals(self, appliance_id: str) -> None:
        """The host application's save of what the policy just decided for the appliance, awaited.

        The owner may revoke the appliance while it is saved: then no certificate (see _answer).
        """
        decided = self._revocation_mark(appliance_id)
        await self._approvals_saved()
        if self._revoked_since(appliance_id, decided):
            raise CertificateRevoked("the appliance was revoked while this request was handled")

    def _revocation_mark(self, appliance_id: str) -> int:
        """How many revocations of the appliance had begun when a request was decided."""
        return self._revocations.get(appliance_id, 0)

    def _revoked_since(self, appliance_id: str, decided: int) -> bool:
        """Whether the owner revoked the appliance after the request was decided, or is revoking it."""
        return self._revoking.get(appliance_id, 0) > 0 or self._revocations.get(appliance_id, 0) != decided

    async def _answer(
        self,
        request: CertificateRequest,
        grant: Grant,
        appliance_id: str,
        *,
        keygen: bool = False,
        renews: int | None = None,
        also: tuple[int, ...] = (),
    ) -> Outcome:
        """A certificate for an authorized request; a retry of one answered before gets that again.

        Whether the answer was lost, the appliance loops, or a copy of an approved request is
        replayed, a retry must not mint another certificate: each would be a ledger record kept for
        good. An earlier answer to the same request (same key and grant; with serverkeygen, the same
        generated key) is handed out again while it is unrevoked and in the first half of its
        lifetime, also to requests that arrive while it is being made; a request later than that is
        an appliance wanting a fresh certificate. A renewal never gets back the certificate it
        presents (``renews``). Issuing supersedes the appliance's oldest valid certificate beyond
        MAX_VALID_CERTIFICATES, and ``also`` these.
        """
        decided = self._revocation_mark(appliance_id)  # the owner may revoke while this is made
        while (
            earlier := self._earlier(appliance_id, request.key_fingerprint, grant, keygen, renews)
        ) is not None:
            outcome = await asyncio.shield(earlier.outcome)
            if outcome is not None:
                issued = outcome.issued if isinstance(outcome, IssuedWithKey) else outcome
                if issued.certificate.serial_number != renews and self._young(issued):
                    return outcome
                break
        answer = _Answer(
            request.key_fingerprint, grant, keygen, renews, asyncio.get_running_loop().create_future()
        )
        answers = self._answers.setdefault(appliance_id, [])
        answers.append(answer)
        outcome = None
        try:
            private_key, public_key, key_fingerprint = None, request.public_key, request.key_fingerprint
            if keygen:  # the request's key only proved possession: the certificate is for a new one
                want_rsa = isinstance(request.public_key, rsa.RSAPublicKey)
                private_key = await asyncio.to_thread(_generate_key, want_rsa=want_rsa)
                public_key = private_key.public_key()
                key_fingerprint = public_key_fingerprint(public_key)
            issued = await self._sign_and_record(
                public_key, key_fingerprint, grant, appliance_id, decided, renews, also
            )
            outcome = issued if private_key is None else IssuedWithKey(issued, private_key)
            return outcome
        finally:
            if outcome is None and answer in answers:
                answers.remove(answer)  # failed: whoever waits for it makes their own
            answer.outcome.set_result(outcome)
            self._keep_valid_answers(appliance_id)

    def _earlier(
        self, appliance_id: str, key_fingerprint: str, grant: Grant, keygen: bool, renews: int | None
    ) -> _Answer | None:
        """The newest answer (given or being made) to the same request, if any."""
        for answer in reversed(self._answers.get(appliance_id, ())):
            if (answer.key_fingerprint, answer.grant, answer.keygen) != (key_fingerprint, grant, keygen):
                continue
            issued = answer.issued()
            if issued is None or issued.certificate.serial_number != renews:
                return answer
        return None

    def _keep_valid_answers(self, appliance_id: str) -> None:
        """Forget answers whose certificate is revoked (superseded, say) or expired."""
        if (answers := self._answers.get(appliance_id)) is None:
            return
        now = self._now().timestamp()
        kept = []
        for answer in answers:
            issued = answer.issued()
            record = self.ledger.get(issued.record.serial_number) if issued is not None else None
            if not answer.outcome.done() or (
                record is not None and not record.revoked and now < record.not_after
            ):
                kept.append(answer)
        if kept:
            self._answers[appliance_id] = kept
        else:
            del self._answers[appliance_id]

    def _young(self, issued: Issued) -> bool:
        """Whether a certificate is unrevoked and in the first half of its lifetime."""
        record = self.ledger.get(issued.record.serial_number)
        if record is None or record.revoked:
            return False
        return self._now().timestamp() < (record.not_before + record.not_after) / 2

    async def _sign_and_record(
        self,
        public_key: CertificatePublicKeyTypes,
        key_fingerprint: str,
        grant: Grant,
        appliance_id: str,
        decided: int,
        renews: int | None,
        also: tuple[int, ...],
    ) -> Issued:
        """Sign and record a certificate for a request decided at revocation mark ``decided``."""
        if self._revoked_since(appliance_id, decided):
            raise CertificateRevoked("the appliance was revoked while this request was handled")
        serial = self._reserve_serial()
        now = self._now()
        try:
            certificate = self.ca.issue_appliance_certificate(
                public_key=public_key,
                name=grant.name,
                server_auth=grant.server_auth,
                serial_number=serial,
                not_before=now - _BACKDATE,
                not_after=now + self.issuance.lifetime(grant),
                crl_url=self.crl_url,
                key_fingerprint=key_fingerprint,
            )
        except Exception:
            self.ledger.release_serial(serial)
            raise
        record = await self.ledger.record_issued(
            certificate,
            appliance_id,
            key_fingerprint=key_fingerprint,
            renews=renews,
            supersession=Supersession(now, MAX_VALID_CERTIFICATES, also),
        )
        if self._revoked_since(appliance_id, decided):
            # The owner revoked the appliance while this certificate was being recorded.
            await self.ledger.revoke(serial, reason=x509.ReasonFlags.cessation_of_operation, when=self._now())
            self.policy.remove(appliance_id, [record.key_fingerprint])
            raise CertificateRevoked("the appliance was revoked while this request was handled")
        return Issued(certificate, record)

    def _reserve_serial(self) -> int:
        for _ in range(8):
            serial = x509.random_serial_number()  # 159 random bits
            if self.ledger.reserve_serial(serial):
                return serial
        raise CAFailure("could not draw an unused serial number")


async def _nothing_to_save() -> None:
    """The approvals of a registrar whose host application keeps none."""


def _generate_key(*, want_rsa: bool) -> CertificateIssuerPrivateKeyTypes:
    if want_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())
