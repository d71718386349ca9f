"""The appliance's side of the PIN exchange (SRP-6a): prove the PIN, learn the CA from an answer it trusts.

No I/O: :class:`ApplianceExchange` turns the hub's answers (HTTP bodies) into the appliance's next
message, so the HTTP client and the tests drive it alike. The messages and the parameters are
``custom_components.est_pairing.est.pake``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum, auto
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custom_components.est_pairing.est.errors import HubProofFailed, ProtocolError
from custom_components.est_pairing.est.pake import (
    Challenge,
    FinalAnswer,
    HubProof,
    SessionKeys,
    enroll_message,
    prove_message,
    start_message,
)
from custom_components.est_pairing.est.srp6a import (
    EPHEMERAL_BYTES,
    SrpBackend,
    SrpUser,
    group,
    with_ephemeral,
)
from custom_components.est_pairing.est.verifiers import DEFAULT_BACKEND


@dataclass(frozen=True, slots=True)
class Paired:
    """What a finished exchange gives the appliance: the CA to pin and its certificate."""

    ca: x509.Certificate
    certificate: x509.Certificate


class _Step(Enum):
    NEW = auto()
    STARTED = auto()
    PROVING = auto()
    ENROLLING = auto()
    DONE = auto()
    FAILED = auto()


@dataclass(slots=True)
class _State:
    step: _Step = _Step.NEW
    user: SrpUser | None = None
    session: str = ""
    keys: SessionKeys | None = field(default=None, repr=False)


class ApplianceExchange:
    """One attempt, message by message; each step's argument is the hub's answer to the one before.

    :meth:`start` -> start message; :meth:`answer` (the challenge) -> prove message (M1);
    :meth:`confirm` (the hub's M2) -> enroll message, only once the hub proved it knows the PIN;
    :meth:`conclude` (the final answer) -> the CA and certificate, only if their MAC is right.
    An attempt is used once: after a failure, make another.
    """

    def __init__(
        self,
        appliance_id: str,
        pin: str,
        csr_der: bytes,
        *,
        backend: SrpBackend = DEFAULT_BACKEND,
        ephemeral: bytes | None = None,
    ) -> None:
        self.appliance_id = appliance_id
        self._pin = pin
        self._csr_der = csr_der
        self._backend = backend
        self._ephemeral = ephemeral or secrets.token_bytes(EPHEMERAL_BYTES)
        self._state = _State()

    def __repr__(self) -> str:
        return f"ApplianceExchange({self.appliance_id!r}, {self._state.step.name.lower()})"

    def start(self) -> dict[str, str]:
        """The start message (slow: A = g^a)."""
        with self._step(_Step.NEW, _Step.STARTED):
            kwargs = group(self._backend)
            user = with_ephemeral(
                lambda a: self._backend.User(self.appliance_id, self._pin, bytes_a=a, **kwargs),
                self._ephemeral,
            )
            _, a_public = user.start_authentication()
            self._state.user = user
            return start_message(self.appliance_id, a_public, self._csr_der)

    async def start_async(self) -> dict[str, str]:
        """:meth:`start` in a worker thread."""
        return await asyncio.to_thread(self.start)

    def answer(self, body: bytes) -> dict[str, str]:
        """The prove message (M1) for the hub's challenge (slow: two exponentiations)."""
        with self._step(_Step.STARTED, _Step.PROVING):
            challenge = Challenge.parse(body)
            proof = self._user().process_challenge(challenge.salt, challenge.b_public)
            if proof is None:  # pragma: no cover - the parser refuses such a B first (and u = 0 never comes)
                raise ProtocolError("the hub's B fails the SRP-6a safety check")
            self._state.session = challenge.session
            return prove_message(challenge.session, proof)

    async def answer_async(self, body: bytes) -> dict[str, str]:
        """:meth:`answer` in a worker thread."""
        return await asyncio.to_thread(self.answer, body)

    def confirm(self, body: bytes) -> dict[str, str]:
        """The enroll message (the request's MAC), once the hub's M2 proves it knows the PIN.

        HubProofFailed otherwise: a fake hub learns nothing more than M1, which tests no PIN guess.
        """
        with self._step(_Step.PROVING, _Step.ENROLLING):
            hub_proof = HubProof.parse(body)
            user = self._user()
            user.verify_session(hub_proof.proof)  # pysrp compares with ==: each attempt checks one M2 once
            if not user.authenticated() or (session_key := user.get_session_key()) is None:
                raise HubProofFailed(
                    "the hub could not prove it knows this appliance's PIN: not the household hub, or its "
                    "owner typed another PIN; nothing it sent is trusted"
                )
            keys = self._state.keys = SessionKeys.derive(session_key)
            return enroll_message(self._state.session, keys.csr_mac(self._csr_der))

    def conclude(self, body: bytes) -> Paired:
        """The CA to pin and the certificate, once their MAC proves the hub of the exchange sent them.

        HubProofFailed for a wrong MAC (a relay's CA); ProtocolError for an authenticated answer that
        is unusable.
        """
        with self._step(_Step.ENROLLING, _Step.DONE):
            answer = FinalAnswer.parse(body)
            keys = self._state.keys
            if keys is None or not keys.answer_mac_matches(answer.ca_der, answer.certificate_der, answer.mac):
                raise HubProofFailed("the CA and certificate are not the ones the PIN exchange authenticated")
            return self._paired(answer)

    def _paired(self, answer: FinalAnswer) -> Paired:
        try:
            ca = x509.load_der_x509_certificate(answer.ca_der)
            certificate = x509.load_der_x509_certificate(answer.certificate_der)
        except ValueError:
            raise ProtocolError("the hub's CA or certificate is not a DER certificate") from None
        try:
            certificate.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise ProtocolError("the hub's certificate is not issued by its CA") from None
        csr = x509.load_der_x509_csr(self._csr_der)
        if _spki(certificate.public_key()) != _spki(csr.public_key()):
            raise ProtocolError("the hub's certificate is not for this appliance's key")
        return Paired(ca, certificate)

    def _user(self) -> SrpUser:
        if self._state.user is None:  # pragma: no cover - _step orders the steps
            raise RuntimeError("the exchange has not started")
        return self._state.user

    @contextmanager
    def _step(self, expected: _Step, following: _Step) -> Iterator[None]:
        """Run one step in order; a step that raises leaves the attempt failed for good."""
        if (step := self._state.step) is not expected:
            raise RuntimeError(
                f"the exchange is at its {step.name.lower()} step, not at {expected.name.lower()}"
            )
        self._state.step = _Step.FAILED
        yield
        self._state.step = following


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
