"""The owner's decisions: waiting requests as discovery cards, approve, reject, ignore, pre-register, revoke.

One discovery flow (a card under Discovered) per appliance identity while it has requests waiting;
what its dialogs show is worked out when they are shown, not when the request arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import logging
from typing import Any

from homeassistant.config_entries import SOURCE_IGNORE, SOURCE_INTEGRATION_DISCOVERY
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import discovery_flow

from .appliances import Appliances, device_details
from .const import DOMAIN, STEP_EXCHANGE, STEP_EXCHANGE_DONE
from .est.csr import ApplianceDetails
from .est.ledger import CertificateRecord
from .est.policy import (
    CredentialKind,
    ExchangeFailure,
    ExchangeOutcome,
    PendingEnrollment,
    PinGiven,
    Registration,
    Review,
)
from .est.service import EstService
from .exceptions import AlreadyPaired, NotSaved

_LOGGER = logging.getLogger(__name__)


def pending_discovery_data(pending: PendingEnrollment) -> dict[str, Any]:
    """What a discovery flow needs to find one pending request and name its card (JSON-safe).

    What the dialogs show is worked out when they are shown (:meth:`Decisions.review`): the
    appliance may have been paired, or its device changed, since the request arrived.
    """
    return {
        "request_id": pending.request_id,
        "identity": pending.identity,
        "appliance_id": pending.appliance_id,
        "name": pending.details.name or pending.appliance_id,
    }


@dataclass(frozen=True, slots=True)
class OwnerReview:
    """A waiting request as the owner's dialog shows it, worked out when shown.

    ``device``: what the appliance's device (kept after a revocation too) shows now, if it has one;
    ``paired_key``: the key of the paired appliance's newest certificate (or one the owner approved).
    """

    review: Review
    device: ApplianceDetails | None
    paired_key: str | None

    @property
    def exchange(self) -> bool:
        """Whether it is a first pairing through the PIN exchange: the appliance proves the PIN typed."""
        return self.review.paired is None and self.review.pending.kind is CredentialKind.PAKE

    @property
    def new_details(self) -> bool:
        """Whether the request reports another model, manufacturer or serial number than the device."""
        return self.device is not None and device_details(self.device) != device_details(
            self.review.pending.details
        )


class Decisions:
    """Turns waiting requests into discovery cards, and carries out what the owner decides."""

    def __init__(self, hass: HomeAssistant, service: EstService, appliances: Appliances) -> None:
        self.hass = hass
        self._service = service
        self._appliances = appliances
        self._stopping = False
        self._deciding: set[str] = set()  # flows in a step that waits for the SRP worker

    # --- waiting requests -> discovery cards --------------------------------------------------------

    @callback
    def pending_added(self, pending: PendingEnrollment) -> None:
        """A new request waits: it gets a card."""
        _LOGGER.info(
            "Appliance %s asks to enroll from %s; waiting for the owner",
            pending.appliance_id,
            pending.address,
        )
        self._start_flow(pending)

    @callback
    def pending_removed(self, pending: PendingEnrollment) -> None:
        """A request stopped waiting: its card goes, or shows the identity's next waiting request."""
        # Deferred: the flow that approved or rejected this request is still finishing its step.
        self.hass.loop.call_soon(self._resync_flows, pending.identity)

    @callback
    def show_again(self, identity: str) -> None:
        """A dialog closed without a decision: its waiting request gets a card again (unless stopping)."""
        self.hass.loop.call_soon(self._show_again, identity)

    @callback
    def close_cards(self) -> None:
        """The hub stops: its requests die with it, and their cards with them (none shown again)."""
        self._stopping = True
        for flow in self.hass.config_entries.flow.async_progress_by_handler(
            DOMAIN, match_context={"source": SOURCE_INTEGRATION_DISCOVERY}
        ):
            self.hass.config_entries.flow.async_abort(flow["flow_id"])

    @callback
    def _start_flow(self, pending: PendingEnrollment) -> None:
        discovery_flow.async_create_flow(
            self.hass,
            DOMAIN,
            context={"source": SOURCE_INTEGRATION_DISCOVERY},
            data=pending_discovery_data(pending),
        )

    @callback
    def _resync_flows(self, identity: str) -> None:
        """One discovery flow per identity while it has requests waiting for the owner, none after.

        A request whose PIN the owner gave waits for its appliance to prove it: no card. A dialog
        waiting for that proof ends by itself, telling the owner how it went.
        """
        waiting = [
            p for p in self._service.policy.pending_requests() if p.identity == identity and not p.pin_given
        ]
        flows = self.hass.config_entries.flow.async_progress_by_handler(
            DOMAIN, match_context={"unique_id": identity}
        )
        if not waiting:
            for flow in flows:
                # A dialog in the middle of a step ends itself, saying why; aborted now, the owner
                # would get an unknown flow instead.
                if flow["flow_id"] in self._deciding:
                    continue
                if flow["step_id"] not in (STEP_EXCHANGE, STEP_EXCHANGE_DONE):
                    self.hass.config_entries.flow.async_abort(flow["flow_id"])
        elif not flows:  # another key of the same appliance id was waiting behind this one
            self._start_flow(waiting[0])

    @callback
    def _show_again(self, identity: str) -> None:
        if not self._stopping:
            self._resync_flows(identity)

    # --- what the owner decides ---------------------------------------------------------------------

    def review(self, request_id: str) -> OwnerReview:
        """What the owner's dialog shows about a waiting request now (PendingRequestGone if gone)."""
        review = self._service.policy.review(request_id)
        appliance_id = review.pending.appliance_id
        paired_key = None
        if review.paired is not None:
            latest = self._service.ledger.latest(appliance_id)
            approved = sorted(review.paired.keys)
            paired_key = latest.key_fingerprint if latest is not None else next(iter(approved), None)
        return OwnerReview(review, self._appliances.device(appliance_id), paired_key)

    async def async_approve(
        self, request_id: str, *, pin: str | None, use_new_details: bool = False
    ) -> Registration | PinGiven:
        """Approve a pending request (raises the library's errors) and add the appliance.

        An appliance that has a device keeps its details unless the owner chose the request's. One
        that pairs through the PIN exchange is added once its exchange proves the PIN typed
        (:meth:`exchange_approved`).
        """
        device = self.review(request_id).device
        outcome = await self._service.policy.approve(
            request_id, pin=pin, use_new_details=use_new_details, known=device
        )
        if isinstance(outcome, Registration):
            self._appliances.ensure(outcome.appliance_id, outcome.details, update=use_new_details)
        return outcome

    @contextmanager
    def deciding(self, flow_id: str) -> Iterator[None]:
        """While a dialog's step decides, a request that goes meanwhile leaves its flow to that step."""
        self._deciding.add(flow_id)
        try:
            yield
        finally:
            self._deciding.discard(flow_id)

    def next_exchange(self, request_id: str) -> asyncio.Future[ExchangeOutcome]:
        """How the appliance's next PIN exchange ends, after :meth:`async_approve` gave its PIN."""
        return self._service.policy.next_exchange(request_id)

    @callback
    def exchange_approved(self, registration: Registration) -> None:
        """An exchange proved the PIN the owner typed: the appliance is added."""
        self._appliances.ensure(registration.appliance_id, registration.details, update=False)

    @callback
    def exchange_failed(self, failure: ExchangeFailure) -> None:
        """The PIN the owner typed did not match the appliance's: its card comes back to type it again."""
        if failure.pending is not None and failure.attempts_left:
            self.show_again(failure.pending.identity)

    def reject(self, request_id: str) -> None:
        """Reject one pending request."""
        self._service.policy.reject(request_id)

    def ignore_identity(self, identity: str) -> None:
        """The owner ignored an appliance's discovery: withdraw its waiting requests.

        While it stays ignored the policy refuses its requests (:meth:`refusal`); once the owner
        deletes the ignored entry it may ask again, with the same key too.
        """
        for pending in self._service.policy.pending_requests():
            if pending.identity == identity:
                self._service.policy.withdraw(pending.request_id)

    @callback
    def refusal(self, identity: str) -> str | None:
        """The library asks: an appliance the owner ignored is refused while it stays ignored."""
        ignored = self.hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, identity)
        if ignored is not None and ignored.source == SOURCE_IGNORE:
            return "the owner ignored this appliance in Home Assistant"
        return None

    async def async_preregister(
        self, appliance_id: str, pin: str, name: str | None, *, add_subentry: bool = True
    ) -> Registration:
        """Let an appliance enroll unattended with this id and PIN; adds it as an appliance.

        Raises AlreadyPaired for an appliance the hub has: a PIN must not replace the keys the owner
        approved. The subentry flow creates the subentry itself (``add_subentry=False``).
        """
        if self._service.policy.registration(appliance_id) is not None or self._appliances.has(appliance_id):
            raise AlreadyPaired(appliance_id)
        registration = await self._service.policy.preregister(appliance_id, pin, ApplianceDetails(name=name))
        if add_subentry:
            self._appliances.ensure(appliance_id, registration.details)
        return registration

    async def async_revoke(self, appliance_id: str) -> list[CertificateRecord]:
        """Revoke an appliance's certificates; it cannot re-enroll until paired again."""
        records = await self._service.registrar.revoke_appliance(appliance_id)
        # Its registration is gone from the approvals on disk too before this returns: a PIN left
        # there by a crash would let it enroll again with a new key.
        try:
            await self._service.flush(check=True)
        except OSError as err:
            raise NotSaved(appliance_id, len(records)) from err
        _LOGGER.info("Revoked %s certificate(s) of %s", len(records), appliance_id)
        return records

    async def async_remove_appliance(self, appliance_id: str) -> None:
        """Revoke and forget an appliance whose device the owner deletes."""
        await self.async_revoke(appliance_id)
        # After the device registry has finished removing the device, drop the subentry too.
        self.hass.loop.call_soon(self._appliances.remove, appliance_id)

    async def async_revoke_removed(self, appliance_id: str) -> None:
        """Revoke an appliance whose subentry is gone; approvals that cannot be saved stop no other.

        Raises the library's error if the ledger cannot record the revocation. Until the revocation
        is saved, the appliance stays marked in the entry: the next start revokes it again.
        """
        try:
            await self.async_revoke(appliance_id)
        except NotSaved:  # revoked; the storage repair issue tells the owner, the next save retries
            _LOGGER.warning("Revoked %s, but the approvals could not be saved", appliance_id)
            return
        self._appliances.revoked(appliance_id)
