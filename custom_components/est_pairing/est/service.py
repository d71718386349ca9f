"""A running EST server: the household CA, ledger, policy and listener over injected stores.

The Home Assistant integration and the standalone command both run this, with different stores,
and each follows it through one :class:`ServiceListener`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
import logging
import ssl
import time
from typing import Any

from cryptography import x509

from .ca import CurveName, HouseholdCA
from .errors import CAFailure, HouseholdCAMissing
from .issuance import IssuancePolicy
from .ledger import Ledger, LedgerListener
from .limits import DEFAULT_CONNECTION_LIMITS, DEFAULT_VALIDITY_DAYS, ConnectionLimits
from .policy import EnrollmentPolicy, ExchangeFailure, PendingEnrollment, PolicyListener, Registration
from .registrar import Registrar
from .server import DEFAULT_LABELS, EstApplication, EstListener
from .srp_worker import SrpWorker
from .storage import DocumentStore, JournalStore
from .tls import ListenerIdentity, ListenerNames, load_identity, server_ssl_context
from .wire import CRL_PATH

_LOGGER = logging.getLogger(__name__)
CA_DOCUMENT_VERSION = 1
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - bind hosts that mean every interface


@dataclass(slots=True)
class ServiceConfig:
    """How to run the server."""

    ca_name: str
    port: int
    bind_host: str | None = None  # None: every interface
    names: ListenerNames = field(default_factory=lambda: ListenerNames.from_hosts(["localhost", "127.0.0.1"]))
    labels: Sequence[str] = DEFAULT_LABELS
    validity_days: int = DEFAULT_VALIDITY_DAYS
    manufacturer_cas: Sequence[x509.Certificate] = ()
    auto_approve: bool = False
    curve: CurveName = "P-256"
    limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS


class ServiceListener(PolicyListener, LedgerListener):
    """Everything a running server tells the application around it; each method does nothing here.

    The application (Home Assistant's hub, the standalone command) overrides the ones it follows and
    gives it to :class:`EstService`. Called on the event loop while the library is at work: a method
    may read the library, never change it.
    """

    def approvals_saved(self, error: OSError | None) -> None:
        """A save of the approvals ended: None, or why those on disk are behind those in memory."""


class _PolicyEvents(PolicyListener):
    """The policy's events, told to the application; a change of the approvals is saved first."""

    def __init__(self, listener: ServiceListener, save: Callable[[], None]) -> None:
        self._listener = listener
        self._save = save

    def pending_added(self, pending: PendingEnrollment) -> None:
        self._listener.pending_added(pending)

    def pending_removed(self, pending: PendingEnrollment) -> None:
        self._listener.pending_removed(pending)

    def approvals_changed(self) -> None:
        self._save()
        self._listener.approvals_changed()

    def exchange_failed(self, failure: ExchangeFailure) -> None:
        self._listener.exchange_failed(failure)

    def exchange_approved(self, registration: Registration) -> None:
        self._listener.exchange_approved(registration)

    def refusal(self, identity: str) -> str | None:
        return self._listener.refusal(identity)


class EstService:
    """Loads (or creates) the CA, ledger and approvals; runs the listener."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        ca_store: DocumentStore,
        policy_store: DocumentStore,
        ledger_journal: JournalStore,
        clock: Callable[[], float] = time.time,
        listener: ServiceListener | None = None,
    ) -> None:
        self.config = config
        self._events = listener or ServiceListener()
        self._ca_store = ca_store
        self._policy_store = policy_store
        self._clock = clock
        self.ledger = Ledger(ledger_journal, self._events)
        # The SRP arithmetic (PIN exchanges, verifiers, HTTP Basic PINs) runs in a process of its own.
        self.srp = SrpWorker()
        self.policy = EnrollmentPolicy(
            clock=clock,
            auto_approve=config.auto_approve,
            listener=_PolicyEvents(self._events, self._schedule_policy_save),
            work=self.srp,
        )
        self.issuance = IssuancePolicy(validity_days=config.validity_days, reserved_names=config.names.all())
        self._ca: HouseholdCA | None = None
        self._identity: ListenerIdentity | None = None
        self._registrar: Registrar | None = None
        self._listener: EstListener | None = None
        self._save_lock = asyncio.Lock()
        self._saves: set[asyncio.Task[None]] = set()
        self._restored = False  # approvals are saved only once those on disk are read: never over them
        # Why the approvals on disk are behind the ones in memory (None: they are not); told to the
        # service listener after every save. Each save writes everything, so the next one catches up.
        self.policy_save_error: OSError | None = None

    # --- state --------------------------------------------------------------------------------------

    @property
    def ca(self) -> HouseholdCA:
        """The household CA (after :meth:`load`)."""
        if self._ca is None:
            raise RuntimeError("EstService.load() has not run")
        return self._ca

    @property
    def registrar(self) -> Registrar:
        """The EST operations (after :meth:`load`)."""
        if self._registrar is None:
            raise RuntimeError("EstService.load() has not run")
        return self._registrar

    @property
    def listener_identity(self) -> ListenerIdentity:
        """The listener's current certificate and key."""
        if self._identity is None:
            raise RuntimeError("EstService.load() has not run")
        return self._identity

    @property
    def port(self) -> int:
        """The bound port once started, else the configured one."""
        return self._listener.port if self._listener is not None else self.config.port

    def now(self) -> datetime:
        """The service clock as an aware datetime."""
        return datetime.fromtimestamp(self._clock(), UTC)

    async def load(self) -> bool:
        """Load or create everything; True when the CA was created now.

        Raises HouseholdCAMissing, and creates nothing, when the CA's document is gone (a damaged
        file set aside, say) while the ledger or the approvals are not.
        """
        document = await self._ca_store.load()
        policy_document = await self._policy_store.load()
        await self.ledger.load()
        if document is None and (policy_document is not None or len(self.ledger)):
            raise HouseholdCAMissing(
                "the household CA is missing, but the certificates or approvals made under it are not: "
                "restore it from a backup (a new CA would cut off every paired appliance)"
            )
        created = document is None
        if document is None:
            self._ca = await asyncio.to_thread(
                HouseholdCA.create, self.config.ca_name, curve=self.config.curve, now=self.now()
            )
            _LOGGER.info("Created the household CA (SHA-256 %s)", self._ca.fingerprint)
        else:
            self._ca, self._identity = _from_document(document)
        reissued = self._identity is None or self._identity.needs_renewal(
            self._ca, self.config.names, self.now()
        )
        if reissued:
            self._identity = ListenerIdentity.issue(self._ca, self.config.names, self.now())
        if created or reissued:
            try:
                await self._save_ca(self.listener_identity)
            except OSError as err:
                if created:
                    raise  # a CA that was not saved is never used
                # Any certificate of the saved CA serves the listener; the next start issues another.
                _LOGGER.warning(
                    "Could not save the re-issued EST listener certificate (%s); using it anyway", err
                )
        self.policy.restore(policy_document or {})
        self._restored = True
        self._registrar = Registrar(
            ca=self._ca,
            ledger=self.ledger,
            policy=self.policy,
            issuance=self.issuance,
            manufacturer_cas=self.config.manufacturer_cas,
            crl_url=self.crl_url,
            now=self.now,
            approvals_saved=self._approvals_saved_before_issuing,
        )
        return document is None

    @property
    def crl_url(self) -> str:
        """Where the CRL is published (named in every certificate's CRL distribution point).

        At the address or name the listener is bound to, when that is one host: the one the owner
        chose, which other machines reach. A wildcard bind (every interface) names the first of the
        listener's names (the Home Assistant hub lists ``<host>.local`` first).
        """
        host = self.config.bind_host
        if host is None or host.strip("[]") in _WILDCARDS:
            host = next(iter(self.config.names.all()), "localhost")
        return f"https://{url_host(host)}:{self.port}{CRL_PATH}"

    async def _save_ca(self, identity: ListenerIdentity) -> None:
        """Save the CA with this listener identity; raises OSError if it cannot be written."""
        ca_pem, ca_key = self.ca.to_pem()
        listener_pem, listener_key = identity.to_pem()
        await self._ca_store.save(
            {
                "version": CA_DOCUMENT_VERSION,
                "ca": {"certificate": ca_pem.decode(), "private_key": ca_key.decode()},
                "listener": {
                    "certificate": listener_pem.decode(),
                    "private_key": listener_key.decode(),
                },
            }
        )

    def _schedule_policy_save(self) -> None:
        """Save the approvals soon (in a task; :meth:`flush` waits for it), once they were loaded."""
        if not self._restored:
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._save_policy_in_background(), name="est policy save")
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _save_policy_in_background(self) -> None:
        with contextlib.suppress(OSError):  # logged, kept in policy_save_error and told by save_policy
            await self.save_policy()

    async def save_policy(self) -> None:
        """Persist approvals now (saves run one at a time, each writing the latest state).

        Raises OSError when they cannot be written (a full disk): it is logged, kept in
        :attr:`policy_save_error` until a save succeeds, and told to the service listener.
        """
        async with self._save_lock:
            error: OSError | None = None
            try:
                await self._policy_store.save(self.policy.export())
            except OSError as err:
                error = err
            if error is not None and self.policy_save_error is None:
                _LOGGER.error("Could not save the approvals (%s); every later change tries again", error)
            elif error is None and self.policy_save_error is not None:
                _LOGGER.info("The approvals are saved again")
            self._policy_saved(error)
            if error is not None:
                raise error

    async def catch_up_policy_save(self) -> None:
        """If the approvals on disk are behind those in memory, try to save them once more.

        A failure stays in :attr:`policy_save_error` (and was logged when it began).
        """
        if self.policy_save_error is not None:
            with contextlib.suppress(OSError):
                await self.save_policy()

    async def _approvals_saved_before_issuing(self) -> None:
        """The approvals on disk say what the policy decided, before a certificate is answered on it.

        A request may change them (it uses a pre-registration, or an exchange approves it); answered
        first, a crash before the save would leave the pre-registration unused on disk, to admit
        another key after the restart. CAFailure (500) if they cannot be saved: nothing is issued.
        """
        await self.flush()
        await self.catch_up_policy_save()
        if self.policy_save_error is not None:
            raise CAFailure("the approvals could not be saved; nothing was issued")

    def _policy_saved(self, error: OSError | None) -> None:
        self.policy_save_error = error
        self._events.approvals_saved(error)

    async def flush(self, *, check: bool = False) -> None:
        """Wait for pending saves, and for any that start meanwhile.

        With ``check``, raise the OSError that keeps the approvals on disk behind those in memory:
        what the owner just decided is not saved.
        """
        while self._saves:
            # Take them out first: gather() over finished tasks completes without yielding (3.12+),
            # so waiting for their done-callbacks to empty the set would spin forever.
            saves = list(self._saves)
            self._saves.difference_update(saves)
            await asyncio.gather(*saves)
        if check and self.policy_save_error is not None:
            raise self.policy_save_error

    # --- listener -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the TLS context (in a thread: it loads files) and start serving."""
        context = await asyncio.to_thread(self._ssl_context)
        application = EstApplication(self.registrar, labels=self.config.labels, work=self.srp)
        listener = EstListener(
            application,
            host=self.config.bind_host,
            port=self.config.port,
            ssl_context=context,
            limits=self.config.limits,
        )
        await listener.start()
        self._listener = listener
        self.registrar.crl_url = self.crl_url  # the bound port is known now

    def _ssl_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.listener_identity, self.ca.certificate, self.config.manufacturer_cas)

    async def stop(self) -> None:
        """Stop serving, stop the SRP worker, and finish pending saves, the ledger's included."""
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        await self.srp.close()
        await self.ledger.wait_idle()
        await self.flush()
        await self.catch_up_policy_save()  # a last try: what is not saved now is lost

    async def update_names(self, names: ListenerNames) -> bool:
        """Re-issue the listener certificate if it does not cover ``names`` or nears expiry."""
        self.config.names = names
        self.issuance.reserved_names = names.all()
        if not self.listener_identity.needs_renewal(self.ca, names, self.now()):
            return False
        identity = ListenerIdentity.issue(self.ca, names, self.now())
        await self._save_ca(identity)  # raises OSError if it cannot be saved: the listener keeps the old one
        self._identity = identity
        if self._listener is not None:
            await asyncio.to_thread(
                load_identity, self._listener.ssl_context, self._identity, self.ca.certificate
            )
        _LOGGER.info("Re-issued the EST listener certificate for %s", ", ".join(names.all()))
        return True


def url_host(host: str) -> str:
    """A host as a URL writes it: IPv6 literals in brackets, a zone's ``%`` as ``%25`` (RFC 6874)."""
    host = host.strip("[]")
    return f"[{host.replace('%', '%25')}]" if ":" in host else host


def _from_document(document: dict[str, Any]) -> tuple[HouseholdCA, ListenerIdentity | None]:
    ca = HouseholdCA.from_pem(document["ca"]["certificate"].encode(), document["ca"]["private_key"].encode())
    listener = document.get("listener")
    identity = (
        ListenerIdentity.from_pem(listener["certificate"].encode(), listener["private_key"].encode())
        if listener
        else None
    )
    return ca, identity
