"""The PIN exchange (SRP-6a): its parameters, its messages, and the hub's side of it.

An appliance that knows only its id and the PIN printed on it proves the PIN to the hub, and the
hub proves it holds the verifier the owner made from the same PIN, without either sending the PIN
or anything that tests PIN guesses offline (RFC 2945, RFC 5054). The key both ends derive
authenticates the appliance's certificate request to the hub and the household CA and certificate
to the appliance. ``docs/appliance-profile.md`` specifies it for appliance makers; the appliance's
side is ``est_tools.appliance.pake_client``.

The arithmetic (the group, pysrp's calls) is ``srp6a``'s; what the hub keeps is a
``verifiers.PinVerifier``. Every step that raises a number to a secret power is slow (about 0.1-1 ms
with pysrp's OpenSSL backend, 5-50 ms with its pure-Python one): :class:`HubExchanges` takes each
step through an ``SrpWork`` (the hub's SRP worker process), which keeps it off the event loop.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
import hmac
import json
import math
import secrets
import time
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, hmac as crypto_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .csr import CertificateRequest, inspect_request
from .errors import (
    EXCHANGE_GONE_MARK,
    PROOF_FAILED_MARK,
    Busy,
    EstError,
    ExchangeGone,
    MalformedRequest,
    PairingProofFailed,
    ProtocolError,
    TooManyRequests,
)
from .issuance import check_claimed_id
from .limits import PAKE_SESSION_TTL, PAKE_SESSIONS_MAX, PAKE_SESSIONS_PER_ADDRESS
from .srp6a import EPHEMERAL_BYTES, HASH_BYTES, METHOD, b64
from .verifiers import PinVerifier, SrpWork, ThreadedSrp, number
from .wire import decode_base64, load_csr

MDNS_TXT_KEY: Final = "pake"  # TXT pake=<method>[,<method>...]: the hub speaks the exchange
OPERATION: Final = "pake"  # POST /.well-known/est[/label]/pake; GET there lists the methods
MEDIA_TYPE: Final = "application/json"  # every message, both ways
MAX_SALT_BYTES: Final = 64  # what an appliance accepts
SESSION_ID_BYTES: Final = 16  # random bytes of the hub's session ids (base64url, unpadded)
MAX_SESSION_ID_LENGTH: Final = 64

# HKDF-SHA512 (RFC 5869) from K, no salt: one key for each direction.
INFO_APPLIANCE_TO_HUB: Final = b"EST appliance pairing srp6a-sha512-3072: appliance to hub"
INFO_HUB_TO_APPLIANCE: Final = b"EST appliance pairing srp6a-sha512-3072: hub to appliance"


# --- keys and MACs from K ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The two MAC keys an exchange's K gives: one for each direction."""

    appliance_to_hub: bytes = field(repr=False)
    hub_to_appliance: bytes = field(repr=False)

    @classmethod
    def derive(cls, session_key: bytes) -> SessionKeys:
        """HKDF-SHA512 of K, no salt, 64 bytes for each direction."""
        return cls(_hkdf(session_key, INFO_APPLIANCE_TO_HUB), _hkdf(session_key, INFO_HUB_TO_APPLIANCE))

    def csr_mac(self, csr_der: bytes) -> bytes:
        """HMAC-SHA512 of the certificate request (DER) under the appliance's key."""
        return _hmac(self.appliance_to_hub, csr_der)

    def answer_mac(self, ca_der: bytes, certificate_der: bytes) -> bytes:
        """HMAC-SHA512 of the CA and the certificate under the hub's key.

        The CA's length (4 bytes, big-endian) comes first: no bytes can move from one to the other.
        """
        return _hmac(self.hub_to_appliance, len(ca_der).to_bytes(4, "big") + ca_der + certificate_der)

    def csr_mac_matches(self, csr_der: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is :meth:`csr_mac` of the request (compared in constant time)."""
        return hmac.compare_digest(self.csr_mac(csr_der), mac)

    def answer_mac_matches(self, ca_der: bytes, certificate_der: bytes, mac: bytes) -> bool:
        """Whether ``mac`` is :meth:`answer_mac` of the CA and certificate (compared in constant time)."""
        return hmac.compare_digest(self.answer_mac(ca_der, certificate_der), mac)


def _hkdf(session_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA512(), length=HASH_BYTES, salt=None, info=info).derive(session_key)


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA512())
    mac.update(data)
    return mac.finalize()


# --- messages -------------------------------------------------------------------------------------------


def offer() -> dict[str, list[str]]:
    """What ``GET .../pake`` answers: the methods the hub speaks."""
    return {"methods": [METHOD]}


def parse_offer(body: bytes) -> tuple[str, ...]:
    """The methods a hub's ``GET .../pake`` answer lists (ProtocolError if it is not such an answer)."""
    methods = _json_object(body, ProtocolError, "the hub's offer").get("methods")
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ProtocolError("the hub's offer has no list of methods")
    return tuple(methods)


def encode(message: Mapping[str, Any]) -> bytes:
    """A message as sent: compact JSON in UTF-8."""
    return json.dumps(message, separators=(",", ":")).encode()


def start_message(appliance_id: str, a_public: bytes, csr_der: bytes) -> dict[str, str]:
    """The appliance's first message."""
    return {"step": "start", "method": METHOD, "id": appliance_id, "A": b64(a_public), "csr": b64(csr_der)}


def prove_message(session: str, proof: bytes) -> dict[str, str]:
    """The appliance's second message: its proof (M1)."""
    return {"step": "prove", "session": session, "M1": b64(proof)}


def enroll_message(session: str, csr_mac: bytes) -> dict[str, str]:
    """The appliance's third message, once the hub proved itself: the MAC of its certificate request."""
    return {"step": "enroll", "session": session, "csr_mac": b64(csr_mac)}


@dataclass(frozen=True, slots=True)
class StartMessage:
    """A start as read: who, its A, and its certificate request, not yet checked (:func:`check_start`)."""

    appliance_id: str
    a_public: bytes = field(repr=False)
    csr_der: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A parsed start: who, its A, and its certificate request (signature checked)."""

    appliance_id: str
    a_public: bytes = field(repr=False)
    csr_der: bytes = field(repr=False)
    request: CertificateRequest


@dataclass(frozen=True, slots=True)
class ProveRequest:
    """A parsed prove: the appliance's M1."""

    session: str
    proof: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """A parsed enroll: the MAC of the certificate request the exchange started with."""

    session: str
    csr_mac: bytes = field(repr=False)


type PakeRequest = StartRequest | ProveRequest | EnrollRequest
type PakeMessage = StartMessage | ProveRequest | EnrollRequest


def parse_request(body: bytes) -> PakeRequest:
    """An appliance's message, or MalformedRequest saying what is wrong with it."""
    message = parse_message(body)
    return check_start(message) if isinstance(message, StartMessage) else message


def check_start(start: StartMessage) -> StartRequest:
    """A start whose certificate request is sound: its signature and what it asks checked."""
    return StartRequest(
        start.appliance_id, start.a_public, start.csr_der, inspect_request(load_csr(start.csr_der))
    )


def parse_message(body: bytes) -> PakeMessage:
    """An appliance's message, its start's certificate request not yet checked (that is the costly part).

    MalformedRequest says what is wrong with it.
    """
    fields = _json_object(body, MalformedRequest, "request body")
    step = fields.get("step")
    if step == "start":
        method = _text(fields, "method", MalformedRequest, max_length=64)
        if method != METHOD:
            raise MalformedRequest(f"method {method!r} is not offered; this hub speaks {METHOD}")
        appliance_id = check_claimed_id(_text(fields, "id", MalformedRequest, max_length=64))
        a_public = number(_binary(fields, "A", MalformedRequest), "A", MalformedRequest)
        csr_der = _binary(fields, "csr", MalformedRequest)
        if csr_der[:1] != b"\x30":
            raise MalformedRequest("'csr' is not a DER PKCS#10 certificate request")
        return StartMessage(appliance_id, a_public, csr_der)
    if step == "prove":
        return ProveRequest(
            _text(fields, "session", MalformedRequest, max_length=MAX_SESSION_ID_LENGTH),
            _binary(fields, "M1", MalformedRequest, size=HASH_BYTES),
        )
    if step == "enroll":
        return EnrollRequest(
            _text(fields, "session", MalformedRequest, max_length=MAX_SESSION_ID_LENGTH),
            _binary(fields, "csr_mac", MalformedRequest, size=HASH_BYTES),
        )
    raise MalformedRequest('field \'step\' must be "start", "prove" or "enroll"')


@dataclass(frozen=True, slots=True)
class Challenge:
    """The hub's answer to a start: the session to finish, the salt and B."""

    session: str
    salt: bytes
    b_public: bytes = field(repr=False)

    def to_dict(self) -> dict[str, str]:
        """As sent."""
        return {"session": self.session, "salt": b64(self.salt), "B": b64(self.b_public)}

    @classmethod
    def parse(cls, body: bytes) -> Challenge:
        """The hub's answer, or ProtocolError."""
        fields = _json_object(body, ProtocolError, "the hub's challenge")
        session = _text(fields, "session", ProtocolError, max_length=MAX_SESSION_ID_LENGTH)
        salt = _binary(fields, "salt", ProtocolError, max_size=MAX_SALT_BYTES)
        if not salt[0]:
            raise ProtocolError("the hub's salt starts with a zero byte")
        return cls(session, salt, number(_binary(fields, "B", ProtocolError), "B", ProtocolError))


@dataclass(frozen=True, slots=True)
class HubProof:
    """The hub's answer to a right M1: its own proof, M2."""

    proof: bytes = field(repr=False)

    def to_dict(self) -> dict[str, str]:
        """As sent."""
        return {"M2": b64(self.proof)}

    @classmethod
    def parse(cls, body: bytes) -> HubProof:
        """The hub's answer, or ProtocolError."""
        fields = _json_object(body, ProtocolError, "the hub's proof")
        return cls(_binary(fields, "M2", ProtocolError, size=HASH_BYTES))


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """The hub's answer to an enroll: the CA, the certificate, and their MAC."""

    ca_der: bytes = field(repr=False)
    certificate_der: bytes = field(repr=False)
    mac: bytes = field(repr=False)

    def to_dict(self) -> dict[str, str]:
        """As sent."""
        return {"ca": b64(self.ca_der), "certificate": b64(self.certificate_der), "mac": b64(self.mac)}

    @classmethod
    def parse(cls, body: bytes) -> FinalAnswer:
        """The hub's answer, or ProtocolError."""
        fields = _json_object(body, ProtocolError, "the hub's answer")
        return cls(
            _binary(fields, "ca", ProtocolError),
            _binary(fields, "certificate", ProtocolError),
            _binary(fields, "mac", ProtocolError, size=HASH_BYTES),
        )


class _RepeatedField(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            raise _RepeatedField(key)
        fields[key] = value
    return fields


def _json_object(body: bytes, error: type[EstError], what: str) -> dict[str, Any]:
    """A JSON object, each field once (two parsers must never read one message two ways)."""
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_unique)
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8") from None
    except _RepeatedField as repeated:
        raise error(f"{what} has the field {repeated} more than once") from None
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise error(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value


def _text(fields: Mapping[str, Any], name: str, error: type[EstError], *, max_length: int) -> str:
    value = fields.get(name)
    if value is None:
        raise error(f"field '{name}' is missing")
    if not isinstance(value, str) or not value:
        raise error(f"field '{name}' must be a non-empty string")
    if len(value) > max_length:
        raise error(f"field '{name}' is longer than {max_length} characters")
    return value


def _binary(
    fields: Mapping[str, Any],
    name: str,
    error: type[EstError],
    *,
    size: int | None = None,
    max_size: int | None = None,
) -> bytes:
    value = fields.get(name)
    if value is None:
        raise error(f"field '{name}' is missing")
    if not isinstance(value, str):
        raise error(f"field '{name}' must be a base64 string")
    try:
        data = decode_base64(value.encode("ascii", "replace"), what=f"field '{name}'")
    except MalformedRequest as err:
        raise error(str(err)) from None
    if size is not None and len(data) != size:
        raise error(f"field '{name}' must be {size} bytes, not {len(data)}")
    if max_size is not None and len(data) > max_size:
        raise error(f"field '{name}' must be at most {max_size} bytes, not {len(data)}")
    return data


# --- the hub's side --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PakeSession:
    """An open exchange: started, and once the appliance proved the PIN, ``keys`` too. Plain data.

    Each step takes it out of the table (:meth:`HubExchanges.take`); only a right proof puts it back.
    """

    session_id: str
    appliance_id: str
    request: CertificateRequest
    address: str | None
    expires: float
    csr_der: bytes = field(repr=False)
    verifier: PinVerifier = field(repr=False)
    a_public: bytes = field(repr=False)
    b_secret: bytes = field(repr=False)
    b_public: bytes = field(repr=False)
    keys: SessionKeys | None = field(default=None, repr=False)

    @property
    def proven(self) -> bool:
        """Whether the appliance proved the PIN (its M1 was right)."""
        return self.keys is not None


@dataclass(frozen=True, slots=True)
class PakeSuccess:
    """An exchange done: the appliance knew the PIN, and the request is the one it started with.

    The caller issues the certificate for ``session.request``, records it, then answers
    :meth:`final_answer`.
    """

    session: PakeSession
    keys: SessionKeys = field(repr=False)

    def final_answer(self, ca_der: bytes, certificate_der: bytes) -> FinalAnswer:
        """The CA, the certificate and their MAC: the appliance pins the CA only if the MAC is right."""
        return FinalAnswer(ca_der, certificate_der, self.keys.answer_mac(ca_der, certificate_der))


class HubExchanges:
    """The exchanges the hub has open: bounded in number, per address and in time; one per request.

    The caller parses each message (:func:`parse_request`), then:

    - start: finds the appliance's verifier (the PIN the owner typed, or a pre-registration) and
      checks its lockout; :meth:`start` opens the exchange and gives the challenge (salt, B);
    - prove: :meth:`take` hands the session back (its appliance id, to check the lockout), and
      :meth:`prove` checks M1 and gives M2, or raises PairingProofFailed, which the caller counts
      like a wrong PIN;
    - enroll: :meth:`take`, then :meth:`enroll` checks the request's MAC (PairingProofFailed again)
      and gives the PakeSuccess from which the caller answers, once it issued the certificate.

    The table is the event loop's: only the big-number work runs elsewhere, in ``work`` (the hub's
    SRP worker process; threads on pysrp's default backend if none is given).
    """

    def __init__(
        self,
        *,
        work: SrpWork | None = None,
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        ttl: float = PAKE_SESSION_TTL,
        capacity: int = PAKE_SESSIONS_MAX,
        per_address: int = PAKE_SESSIONS_PER_ADDRESS,
    ) -> None:
        self._work = work or ThreadedSrp()
        self._clock = clock
        self._random_bytes = random_bytes
        self._ttl = ttl
        self._capacity = capacity
        self._per_address = per_address
        self._sessions: dict[str, PakeSession] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    async def start(self, start: StartRequest, verifier: PinVerifier, address: str | None) -> Challenge:
        """Open an exchange and give its challenge (one exponentiation, by work; refused first if full)."""
        _check_verifier(start, verifier)
        self._check_room(start, address)
        b_secret = self._random_bytes(EPHEMERAL_BYTES)
        try:
            b_public = await self._work.challenge(verifier, start.a_public, b_secret)
        except ValueError as err:  # A is checked on parsing: pysrp's own safety check backs it
            raise MalformedRequest(str(err)) from None
        self._check_room(start, address)  # others may have started meanwhile
        return self._open(start, verifier, address, b_secret, b_public)

    def take(self, session_id: str) -> PakeSession:
        """The open exchange a prove or enroll names, out of the table: each step is taken once."""
        session = self._open_session(session_id)
        del self._sessions[session_id]
        return session

    def appliance_of(self, session_id: str) -> str:
        """The appliance id of the open exchange a prove or enroll names (left in the table)."""
        return self._open_session(session_id).appliance_id

    def _open_session(self, session_id: str) -> PakeSession:
        self._expire()
        if (session := self._sessions.get(session_id)) is None:
            raise ExchangeGone(
                f"no such PIN exchange: it failed, finished or expired ({self._ttl:.0f} s after its start); "
                f"{EXCHANGE_GONE_MARK}"
            )
        return session

    async def prove(self, session: PakeSession, prove: ProveRequest) -> HubProof:
        """Check the appliance's M1; give M2, keep the exchange for its enroll (3 exponentiations, by work).

        PairingProofFailed if M1 is wrong: the caller counts it like a wrong PIN.
        """
        _check_unproven(session, prove.session)
        outcome = await self._work.verify(session.verifier, session.a_public, session.b_secret, prove.proof)
        if outcome is None:
            raise PairingProofFailed(
                f"{PROOF_FAILED_MARK}: appliance {session.appliance_id} does not know the PIN the hub "
                "has for it"
            )
        answer, session_key = outcome
        self._sessions[session.session_id] = replace(session, keys=SessionKeys.derive(session_key))
        return HubProof(answer)

    def enroll(self, session: PakeSession, enroll: EnrollRequest) -> PakeSuccess:
        """Check that the request is the one the exchange started with (fast: a MAC)."""
        _check_named(session, enroll.session)
        if (keys := session.keys) is None:
            raise MalformedRequest("this PIN exchange is not proven yet: send 'prove' first")
        if not keys.csr_mac_matches(session.csr_der, enroll.csr_mac):
            raise PairingProofFailed(
                f"{PROOF_FAILED_MARK}: the certificate request is not the one it started with"
            )
        return PakeSuccess(session, keys)

    def _check_room(self, start: StartRequest, address: str | None) -> None:
        self._expire()
        others = [s for s in self._sessions.values() if not _same_request(s, start)]
        if len(others) >= self._capacity:
            raise Busy("too many PIN exchanges are open; try again shortly", _ceil(self._ttl))
        if address is not None and sum(s.address == address for s in others) >= self._per_address:
            raise TooManyRequests("too many PIN exchanges are open from this address", _ceil(self._ttl))

    def _open(
        self,
        start: StartRequest,
        verifier: PinVerifier,
        address: str | None,
        b_secret: bytes,
        b_public: bytes,
    ) -> Challenge:
        for earlier in [s for s in self._sessions.values() if _same_request(s, start)]:
            del self._sessions[earlier.session_id]  # one exchange per request: the newest
        session = PakeSession(
            session_id=base64.urlsafe_b64encode(self._random_bytes(SESSION_ID_BYTES)).rstrip(b"=").decode(),
            appliance_id=start.appliance_id,
            request=start.request,
            address=address,
            expires=self._clock() + self._ttl,
            csr_der=start.csr_der,
            verifier=verifier,
            a_public=start.a_public,
            b_secret=b_secret,
            b_public=b_public,
        )
        self._sessions[session.session_id] = session
        return Challenge(session.session_id, verifier.salt, b_public)

    def _expire(self) -> None:
        now = self._clock()
        for session in [s for s in self._sessions.values() if s.expires <= now]:
            del self._sessions[session.session_id]


def _check_verifier(start: StartRequest, verifier: PinVerifier) -> None:
    if verifier.appliance_id != start.appliance_id:
        raise ValueError("the verifier is another appliance's")


def _check_named(session: PakeSession, named: str) -> None:
    if named != session.session_id:
        raise ValueError("the message names another session than the one taken")


def _check_unproven(session: PakeSession, named: str) -> None:
    _check_named(session, named)
    if session.proven:
        raise MalformedRequest("this PIN exchange is proven already: send 'enroll'")


def _same_request(session: PakeSession, start: StartRequest) -> bool:
    return (
        session.appliance_id == start.appliance_id
        and session.request.key_fingerprint == start.request.key_fingerprint
    )


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds))
