"""The PIN exchange at the hub: each message of an appliance's exchange, answered over the registrar.

start: the policy's verifier for the appliance (or the request waits for the owner), then the
challenge; prove: the proof checked (one at a time per appliance, a wrong one counted like a wrong
PIN and told to the host application); enroll: the request's MAC checked, the certificate issued
and recorded through the registrar's usual path, then the CA and certificate sent under the
exchange's MAC. The big-number work runs in ``work`` (the hub's SRP worker process).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding

from .errors import PairingProofFailed
from .pake import (
    EnrollRequest,
    HubExchanges,
    PakeMessage,
    ProveRequest,
    StartMessage,
    StartRequest,
    check_start,
)
from .policy import AwaitingOwner
from .registrar import Registrar
from .verifiers import SrpWork


class PinPairing:
    """Answers the exchange's messages for one registrar."""

    def __init__(
        self, registrar: Registrar, work: SrpWork | None = None, exchanges: HubExchanges | None = None
    ) -> None:
        self.registrar = registrar
        self.exchanges = exchanges or HubExchanges(work=work)

    async def answer(self, message: PakeMessage, address: str | None) -> dict[str, str] | AwaitingOwner:
        """The answer to one message (a JSON object to send), or AwaitingOwner (202); else an EstError."""
        if isinstance(message, StartMessage):
            return await self._start(check_start(message), address)
        if isinstance(message, ProveRequest):
            return await self._prove(message)
        return await self._enroll(message)

    async def _start(self, start: StartRequest, address: str | None) -> dict[str, str] | AwaitingOwner:
        decision = await self.registrar.exchange_verifier(start.appliance_id, start.request, address)
        if isinstance(decision, AwaitingOwner):
            return decision
        return (await self.exchanges.start(start, decision, address)).to_dict()

    async def _prove(self, prove: ProveRequest) -> dict[str, str]:
        policy = self.registrar.policy
        appliance_id = self.exchanges.appliance_of(prove.session)
        async with policy.proving(appliance_id):  # refused here, the session stays open
            session = self.exchanges.take(prove.session)
            try:
                hub_proof = await self.exchanges.prove(session, prove)
            except PairingProofFailed:
                policy.exchange_failed(appliance_id, session.request.key_fingerprint, session.verifier)
                raise
        policy.exchange_proven(appliance_id)
        return hub_proof.to_dict()

    async def _enroll(self, enroll: EnrollRequest) -> dict[str, str]:
        session = self.exchanges.take(enroll.session)
        try:
            success = self.exchanges.enroll(session, enroll)
        except PairingProofFailed:
            self.registrar.policy.exchange_tampered(session.appliance_id)
            raise
        issued = await self.registrar.enroll_exchanged(
            session.appliance_id, session.request, session.verifier
        )
        answer = success.final_answer(
            self.registrar.ca.certificate.public_bytes(Encoding.DER),
            issued.certificate.public_bytes(Encoding.DER),
        )
        return answer.to_dict()
