"""The library's one exception hierarchy; the HTTP layer maps it to status codes in one table."""

from __future__ import annotations


class EstError(Exception):
    """Base class: the message is a one-line reason safe to show to the peer."""


# --- what a request can be refused for (server side; the client raises the same classes) ---


class MalformedRequest(EstError):
    """Undecodable base64/DER, a bad CSR signature, a CSR no policy could ever accept."""


class AuthenticationRequired(EstError):
    """No usable credentials, or wrong ones: the client must authenticate (again)."""


# Words the hub's reasons for these two refusals carry, and the appliance tells them by: their statuses
# (401, 400) are shared with other refusals. Part of the wire: appliances in the field match them too.
PROOF_FAILED_MARK = "the PIN exchange failed"
EXCHANGE_GONE_MARK = "start again"


class PairingProofFailed(AuthenticationRequired):
    """The PIN exchange (SRP-6a) failed: the appliance's proof does not match the hub's verifier.

    A wrong PIN on either side (printed on the appliance, or typed by the owner), or a relay that
    swapped the certificate request. The hub counts it like a wrong PIN. Its reason starts with
    :data:`PROOF_FAILED_MARK`.
    """


class ExchangeGone(MalformedRequest):
    """The PIN exchange a finish names is unknown: it expired, or finished already. Start again.

    Its reason ends with :data:`EXCHANGE_GONE_MARK`.
    """


class NotAllowed(EstError):
    """Authenticated, but the policy (or the owner) does not allow this request."""


class NameTaken(NotAllowed):
    """The appliance id differs only in case from an appliance the owner approved or pre-registered."""


class ProofMismatch(NotAllowed):
    """A new key for a paired appliance does not bring the proof the appliance was paired with."""


class Rejected(NotAllowed):
    """The owner rejected this appliance's request: its identity and key are refused from now on."""


class CertificateRevoked(NotAllowed):
    """The presented certificate, or the key in the request, has been revoked."""


class CertificateExpired(NotAllowed):
    """The presented certificate has expired: it cannot renew, the appliance enrolls again."""


class UnknownResource(EstError):
    """Unknown path, label or operation."""


class MethodNotAllowed(EstError):
    """The operation exists but not with this HTTP method."""

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class UnsupportedMediaType(EstError):
    """The request body's media type is not the one the operation takes."""


class RequestTooLarge(EstError):
    """The request body exceeds the size limit."""


class RequestTimeout(EstError):
    """The request body did not arrive in time."""


class RetryLater(EstError):
    """The request cannot be answered now; the peer should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(RetryLater):
    """The requester must slow down: too many of its requests wait for the owner, say."""


class LockedOut(TooManyRequests):
    """Too many wrong secrets for this identity (or overall): locked until the window passes."""


class Busy(RetryLater):
    """The server is at a bound (pending requests, connections); not the client's fault."""


class OperationNotSupported(EstError):
    """An EST operation this server does not offer (full CMC)."""


class CAFailure(EstError):
    """The CA could not complete an operation that was valid (storage, signing)."""


class HouseholdCAMissing(EstError):
    """The household CA is gone while certificates or approvals made under it remain.

    A new CA would quietly take the household's trust away from every paired appliance: the owner
    restores the CA from a backup, or starts the household again on purpose.
    """


# --- client-side outcomes that have no server-side twin ---


class ProtocolError(EstError):
    """The server's answer does not follow RFC 7030 (wrong type, undecodable body, bad status)."""


class FingerprintMismatch(EstError):
    """The CA the server presented does not match the fingerprint the owner gave."""


class HubProofFailed(EstError):
    """The hub's answer to the PIN exchange does not prove it knows the appliance's PIN.

    A fake hub (or one whose owner typed another PIN): nothing it sent is trusted, its CA least of all.
    """


class ExchangeNotOffered(EstError):
    """The hub does not offer the PIN exchange, and the appliance may not send its PIN another way."""


class ExchangeFailed(EstError):
    """PIN exchanges kept failing: the PIN on the appliance is not the hub's (or a fake hub answers)."""


class ApprovalTimeout(EstError):
    """The owner did not approve the request within the client's overall timeout."""


class ServerNotFound(EstError):
    """No EST server was found by browsing the local network."""


# --- owner-side outcomes (the host application's approval screens) ---


class PendingRequestGone(EstError):
    """The request the owner acts on is no longer pending (expired, approved or rejected)."""


class WrongPin(AuthenticationRequired):
    """The PIN the owner typed differs from the one the appliance sent."""

    def __init__(self, message: str, attempts_left: int) -> None:
        super().__init__(message)
        self.attempts_left = attempts_left
