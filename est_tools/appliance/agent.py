"""An appliance's certificate life cycle: locate the server, bootstrap its CA, enroll, renew in time.

The reference behaviour for appliance makers (docs/appliance-profile.md); ``cli.py`` is its command
line. An appliance with a PIN pairs through the PIN exchange: it learns the CA from the hub's answer,
which the exchange authenticates, and never sends its PIN another way unless allowed to
(``legacy_basic``, for hubs without the exchange). Otherwise trust comes from the CA fingerprint the
owner supplies (or, without one, from the first CA seen, which is then pinned), never from the mDNS
announcement that located the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
import time

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from custom_components.est_pairing.est.csr import ApplianceDetails
from custom_components.est_pairing.est.discovery import SERVICE_TYPE
from custom_components.est_pairing.est.errors import (
    ApprovalTimeout,
    AuthenticationRequired,
    Busy,
    CAFailure,
    CertificateExpired,
    EstError,
    ExchangeFailed,
    ExchangeGone,
    ExchangeNotOffered,
    FingerprintMismatch,
    HubProofFailed,
    LockedOut,
    ProtocolError,
    RequestTimeout,
    RetryLater,
    ServerNotFound,
    UnknownResource,
)
from custom_components.est_pairing.est.fingerprints import (
    certificate_fingerprint,
    format_fingerprint,
    normalize_fingerprint,
    public_key_fingerprint,
)
from custom_components.est_pairing.est.homenet import appliance_dns_name
from custom_components.est_pairing.est.issuance import factory_appliance_id
from custom_components.est_pairing.est.srp6a import METHOD
from custom_components.est_pairing.est.wire import EST_PATH

from .browse import EstServer, browse, candidate_servers
from .client import EstClient, Pending, build_csr, client_ssl_context, renewal_csr
from .exchange import PinExchangeClient
from .keystore import KeyStore
from .pake_client import ApplianceExchange, Paired

RENEWAL_FRACTION = 2 / 3  # renew at two thirds of the lifetime: the last third is for retries
_RETRY_FIRST, _RETRY_MAX = 5.0, 600.0  # retries without a Retry-After back off between these (seconds)
# Worth asking again: the server is unreachable, busy, asks to wait, or failed through no fault of ours.
_TRANSIENT = (ServerNotFound, RetryLater, CAFailure, RequestTimeout)
_LAST_TRY = 10.0  # seconds before notAfter: the last renewal attempt (clocks differ a little)
_PROGRESS_EVERY = 30.0  # seconds between "still waiting" lines
_LONGEST_SLEEP = 3600.0  # wake up hourly to re-read the wall clock (suspend, clock changes)
_SHORT_FINGERPRINT = 4  # groups of four hex digits Home Assistant shows on its discovery card
# Failed PIN exchanges before giving up: the owner may have mistyped the PIN (each failure is one
# guess a fake hub got, and counts towards the hub's lockout).
MAX_FAILED_EXCHANGES = 3

type Report = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FactoryIdentity:
    """A manufacturer-issued certificate and key, the TLS client credential for the first enrollment.

    ``intermediates``: the manufacturer CAs between the certificate and the root the hub trusts,
    nearest first; the TLS handshake sends them with the certificate.
    """

    certificate: x509.Certificate
    private_key: PrivateKeyTypes
    intermediates: tuple[x509.Certificate, ...] = ()

    @property
    def appliance_id(self) -> str:
        """The appliance id the server derives from this certificate (its serial number or name)."""
        details = ApplianceDetails.from_name(self.certificate.subject)
        return factory_appliance_id(details, certificate_fingerprint(self.certificate))


@dataclass(frozen=True, slots=True)
class ApplianceConfig:
    """Who the appliance is, where it keeps its state, and how it finds and trusts the server."""

    appliance_id: str
    state_dir: Path
    pin: str = ""  # empty: the owner approves by comparing key fingerprints
    factory: FactoryIdentity | None = None
    details: ApplianceDetails = field(default_factory=ApplianceDetails)
    server: EstServer | None = None  # None: browse mDNS
    ca_fingerprint: str | None = None  # out of band (typed by the owner, or from a QR code)
    legacy_basic: bool = False  # a hub without the PIN exchange may get the PIN in HTTP Basic
    discovery_timeout: float = 10.0
    approval_timeout: float = 3600.0
    renew_after: float | None = None  # seconds after a certificate is stored; None: RENEWAL_FRACTION

    @property
    def expected_ca_fingerprint(self) -> str | None:
        """The CA the owner vouched for: typed, or scanned with the server (a QR code); normalized.

        ValueError if the two differ, or the typed one is not a SHA-256 fingerprint.
        """
        typed = normalize_fingerprint(self.ca_fingerprint) if self.ca_fingerprint else None
        scanned = self.server.expected_fingerprint if self.server is not None else None
        if typed is not None and scanned is not None and typed != scanned:
            raise ValueError("the CA fingerprint given differs from the one in the QR payload")
        return typed or scanned


class Appliance:
    """Holds a certificate from the household CA and keeps it valid."""

    def __init__(self, config: ApplianceConfig, report: Report) -> None:
        self.config = config
        self._expected = config.expected_ca_fingerprint
        self.store = KeyStore(config.state_dir)
        self._report = report
        self._server: EstServer | None = None
        self._ca: x509.Certificate | None = None
        self._waiting_since: float | None = None
        self._last_progress = 0.0

    async def run(self, *, once: bool = False) -> None:
        """Enroll or renew as needed; unless ``once``, keep renewing until cancelled."""
        if (pinned := await asyncio.to_thread(self.store.pinned_ca)) is not None:
            self._check_pinned(pinned)  # before anything else, even with a valid certificate
        current = await asyncio.to_thread(self.store.current)
        if current is None or _now() >= current[0].not_valid_after_utc:
            if current is not None:
                self._report("the stored certificate has expired; enrolling again with a new key")
                await asyncio.to_thread(self.store.discard_credentials)
            certificate = await self.enroll()
        elif _now() >= self.renewal_due(current[0]):
            certificate = await self._renew_or_enroll(*current, retry=not once)
        else:
            certificate = current[0]
            self._report(f"holding {_describe(certificate)}")
        while True:
            due = self.renewal_due(certificate)
            self._report(f"next renewal at {due.isoformat(timespec='seconds')}")
            if once:
                return
            await _sleep_until(due)
            certificate = await self._renew_or_enroll(*await self._current(), retry=True)

    @property
    def connection(self) -> tuple[EstServer, x509.Certificate] | None:
        """The server this run located and the CA it trusts, once both are known."""
        if self._server is None or self._ca is None:
            return None
        return self._server, self._ca

    def renewal_due(self, certificate: x509.Certificate) -> datetime:
        """When to renew: two thirds into the lifetime, or ``renew_after`` seconds after storing it."""
        if self.config.renew_after is not None:
            return self.store.stored_at() + timedelta(seconds=self.config.renew_after)
        start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
        return start + (end - start) * RENEWAL_FRACTION

    # --- first enrollment -------------------------------------------------------------------------------

    async def enroll(self, *, patient: bool = False) -> x509.Certificate:
        """First enrollment (simpleenroll) by PIN, no PIN or factory certificate; waits for the owner.

        Until the approval timeout it asks again when the server is busy, fails or asks to wait, and,
        once a request waits there (or when ``patient``), when the server cannot be reached. With a
        PIN it pairs through the PIN exchange (:meth:`pair`).
        """
        if self.config.pin and self.config.factory is None:
            server, offered = await self._exchange_server()
            if offered:
                return await self.pair(server, patient=patient)
            if not self.config.legacy_basic:
                raise await _without_exchange(server)
            self._report(
                f"{server} does not offer the PIN exchange: sending the PIN in HTTP Basic "
                "(--legacy-basic: a server that is not the household hub could learn it)"
            )
        server, ca = await self._connection()
        appliance_id = self.config.appliance_id
        key = await asyncio.to_thread(self.store.enrollment_key)
        dns_name = appliance_dns_name(appliance_id)  # the one name the server grants, if any
        dns_names = [dns_name] if dns_name else []
        csr = build_csr(key, appliance_id, details=self.config.details, dns_names=dns_names)
        self._announce_key(public_key_fingerprint(key.public_key()))
        factory = self.config.factory
        client_ssl = None
        if factory is not None:
            client_ssl = await asyncio.to_thread(
                client_ssl_context,
                ca,
                certificate=factory.certificate,
                private_key=factory.private_key,
                intermediates=factory.intermediates,
            )
        deadline = time.monotonic() + self.config.approval_timeout
        delay = _RETRY_FIRST
        while True:
            try:
                server, ca = await self._connection()
                async with _reaching(server), self._client(server, ca) as client:
                    certificate = await client.enroll(
                        csr,
                        username=None if factory else appliance_id,
                        password=self.config.pin,
                        client_ssl=client_ssl,
                        approval_timeout=max(deadline - time.monotonic(), 0),
                        on_pending=self._waiting,
                    )
                break
            except ApprovalTimeout:
                timeout = self.config.approval_timeout
                raise ApprovalTimeout(f"the owner did not approve within {timeout:g} s") from None
            except LockedOut:
                raise  # wrong PINs: the owner must act, asking again would only lengthen the lockout
            except _TRANSIENT as err:
                delay = await self._ride_out(err, deadline, delay, patient=patient, what="enrollment")
        await asyncio.to_thread(self.store.store, certificate)
        self._report(f"enrolled: {_describe(certificate)}; saved in {self.store.directory}")
        return certificate

    async def _ride_out(
        self, err: EstError, deadline: float, delay: float, *, patient: bool, what: str
    ) -> float:
        """Wait, after a failure worth asking again for, until it is worth it; the next back-off delay.

        Raises the error again when waiting is pointless: a server never reached (unless
        ``patient``, or a request waits there), or one that asks to wait past the deadline.
        """
        if isinstance(err, ServerNotFound) and not patient and self._waiting_since is None:
            raise err  # never reached: nothing is waiting there for us
        left = deadline - time.monotonic()
        if isinstance(err, RetryLater):
            wait = float(err.retry_after)  # not sooner (profile section 10)
            if wait > left:
                if isinstance(err, Busy):
                    raise ApprovalTimeout(f"the server stayed busy ({err})") from None
                raise err
        else:
            if left <= 0:
                raise err
            wait, delay = min(delay, left), min(delay * 2, _RETRY_MAX)
        self._report(f"{what} failed ({err}); asking again in {wait:g} s")
        await _sleep(wait)
        self._forget_server(err)
        return delay

    def _announce_key(self, key_fingerprint: str, *, exchange: bool = False) -> None:
        spaced = format_fingerprint(key_fingerprint)
        short = format_fingerprint(key_fingerprint, groups=_SHORT_FINGERPRINT)
        who = self.config.appliance_id
        if exchange:
            how = "through the PIN exchange (the PIN never leaves the appliance)"
        elif self.config.factory is not None:
            how = "with its factory certificate"
        elif self.config.pin:
            how = "with its PIN"
        else:
            how = "without a PIN: the owner approves by comparing this key fingerprint"
        self._report(f"enrolling as {who} {how}; key SHA-256 {spaced} (Home Assistant shows {short})")

    def _waiting(self, pending: Pending, *, for_what: str = "approve this appliance") -> None:
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = self._last_progress = now
            self._report(
                f"waiting for the owner to {for_what} in Home Assistant ... "
                f"(asking again every {pending.retry_after} s)"
            )
        elif now - self._last_progress >= _PROGRESS_EVERY:
            self._last_progress = now
            self._report(f"still waiting for the owner ({now - self._waiting_since:.0f} s)")

    # --- the PIN exchange ---------------------------------------------------------------------------

    async def pair(self, server: EstServer, *, patient: bool = False) -> x509.Certificate:
        """First enrollment through the PIN exchange: the CA comes with the certificate, authenticated.

        The hub's ``202`` means it waits for the owner to type the PIN (or pre-register the id); a
        failed exchange is tried again, up to :data:`MAX_FAILED_EXCHANGES`, since the owner may have
        mistyped the PIN. Otherwise as :meth:`enroll`. A CA it expects (given by the owner, or pinned)
        is checked first: a server without it gets no exchange, so not even one guess at the PIN.
        """
        if self._expected is not None or await asyncio.to_thread(self.store.pinned_ca) is not None:
            self._ca = await self._trust(server)
        appliance_id = self.config.appliance_id
        key = await asyncio.to_thread(self.store.enrollment_key)
        dns_name = appliance_dns_name(appliance_id)
        csr = build_csr(
            key, appliance_id, details=self.config.details, dns_names=[dns_name] if dns_name else []
        )
        csr_der = csr.public_bytes(Encoding.DER)
        self._announce_key(public_key_fingerprint(key.public_key()), exchange=True)
        deadline = time.monotonic() + self.config.approval_timeout
        delay = _RETRY_FIRST
        failures = 0
        restarted = False  # an exchange that expired was started again at once
        while True:
            try:
                outcome = await self._exchange(
                    server, ApplianceExchange(appliance_id, self.config.pin, csr_der)
                )
            except ExchangeGone as err:
                if not restarted:  # it took too long between two steps: start again at once
                    restarted = True
                    self._report(f"the PIN exchange expired ({err}); starting it again")
                    continue
                what = "the PIN exchange"  # the new one expired too: wait, as after other failures
                delay = await self._ride_out(err, deadline, delay, patient=patient, what=what)
                continue
            except (AuthenticationRequired, HubProofFailed) as err:
                failures += 1
                if failures >= MAX_FAILED_EXCHANGES:
                    raise ExchangeFailed(
                        f"{failures} PIN exchanges failed, the last with: {err} (is the PIN right, and is "
                        "this the household hub?)"
                    ) from None
                self._report(f"the PIN exchange failed ({err}); trying again in {_RETRY_FIRST:g} s")
                await _sleep(_RETRY_FIRST)
                continue
            except LockedOut:
                raise  # failed exchanges or wrong PINs: the owner must act
            except _TRANSIENT as err:
                delay = await self._ride_out(err, deadline, delay, patient=patient, what="the PIN exchange")
                continue
            restarted = False
            if isinstance(outcome, Paired):
                return await self._paired(self._server or server, outcome)
            self._waiting(outcome, for_what="type this appliance's PIN")
            if (left := deadline - time.monotonic()) <= 0:
                raise ApprovalTimeout(f"the owner did not approve within {self.config.approval_timeout:g} s")
            await _sleep(min(outcome.retry_after, left))

    async def _exchange(self, server: EstServer, exchange: ApplianceExchange) -> Paired | Pending:
        """One attempt, with the server found again first if it moved (mDNS)."""
        if self._server is None:
            server, offered = await self._exchange_server()
            if not offered:
                raise await _without_exchange(server)
        async with (
            _reaching(server),
            PinExchangeClient(server.base_url, label=server.label, trust=self._ca) as client,
        ):
            return await client.attempt(exchange)

    async def _paired(self, server: EstServer, paired: Paired) -> x509.Certificate:
        """Pin the CA the exchange authenticated (if it is the one expected) and keep the certificate."""
        fingerprint = certificate_fingerprint(paired.ca)
        pinned = await asyncio.to_thread(self.store.pinned_ca)
        expected = self._expected_fingerprint(pinned)
        if expected is not None and expected != fingerprint:
            raise FingerprintMismatch(
                f"the CA the PIN exchange authenticated has SHA-256 {format_fingerprint(fingerprint)}, "
                f"not the expected {format_fingerprint(expected)}"
            )
        if pinned is None:
            await asyncio.to_thread(self.store.pin_ca, paired.ca)
            self._report(
                f"the PIN exchange authenticated the hub's CA: SHA-256 {format_fingerprint(fingerprint)}; "
                f"pinned in {self.store.ca_path}"
            )
        self._compare_hint(server, fingerprint)
        self._server, self._ca = server, paired.ca
        await asyncio.to_thread(self.store.store, paired.certificate)
        self._report(f"enrolled: {_describe(paired.certificate)}; saved in {self.store.directory}")
        return paired.certificate

    async def _exchange_server(self) -> tuple[EstServer, bool]:
        """The server to pair with, and whether it offers the exchange (its announcement, or its answer).

        No CA is fetched: the exchange authenticates the hub's.
        """
        server = self._server or self.config.server
        if server is None:
            server, _ = await self._locate(trust=False)
        self._server = server
        if METHOD in server.pake_methods:
            return server, True
        async with _reaching(server), PinExchangeClient(server.base_url, label=server.label) as client:
            return server, await client.offered()

    # --- renewal ------------------------------------------------------------------------------------

    async def renew(
        self, certificate: x509.Certificate, key: PrivateKeyTypes, *, approval_timeout: float = 600.0
    ) -> x509.Certificate:
        """Re-enrollment (simplereenroll) with the current certificate as TLS client certificate; new key."""
        server, ca = await self._connection()
        new_key = await asyncio.to_thread(self.store.renewal_key)
        async with _reaching(server), self._client(server, ca) as client:
            renewed = await client.reenroll(
                renewal_csr(new_key, certificate), certificate, key, approval_timeout=approval_timeout
            )
        await asyncio.to_thread(self.store.store, renewed)
        self._report(f"renewed: {_describe(renewed)}")
        return renewed

    async def _renew(
        self, certificate: x509.Certificate, key: PrivateKeyTypes, *, retry: bool
    ) -> x509.Certificate:
        """Renew; with ``retry``, ride out an unreachable or busy server until the certificate expires.

        The waits end just before notAfter, for one last attempt while the certificate is valid.
        """
        delay = _RETRY_FIRST
        last = False
        while True:
            try:
                left = (certificate.not_valid_after_utc - _now()).total_seconds()
                return await self.renew(certificate, key, approval_timeout=max(left - _LAST_TRY, 0))
            except (*_TRANSIENT, FingerprintMismatch) as err:
                if isinstance(err, FingerprintMismatch) and self.config.server is not None:
                    raise  # the owner named this server: it holds another CA now
                wait = float(err.retry_after) if isinstance(err, RetryLater) else delay
                left = (certificate.not_valid_after_utc - _now()).total_seconds() - _LAST_TRY
                if not retry or last or left <= 0:
                    raise
                if wait >= left:
                    wait, last = left, True
                self._report(f"renewal failed ({err}); trying again in {wait:g} s")
                await _sleep(wait)
                delay = min(delay * 2, _RETRY_MAX)
                self._forget_server(err)

    async def _renew_or_enroll(
        self, certificate: x509.Certificate, key: PrivateKeyTypes, *, retry: bool
    ) -> x509.Certificate:
        """Renew; a certificate that expired meanwhile cannot, so enroll again (profile section 8)."""
        try:
            return await self._renew(certificate, key, retry=retry)
        except (*_TRANSIENT, ApprovalTimeout, CertificateExpired) as err:
            expiring = _now() + timedelta(seconds=_LAST_TRY) >= certificate.not_valid_after_utc
            if not (expiring or isinstance(err, CertificateExpired)):
                raise
            self._report(
                f"the certificate expired before it could be renewed ({err}); enrolling again with a new key"
            )
        await asyncio.to_thread(self.store.discard_credentials)  # an expired key is not used again
        self._waiting_since = None
        return await self.enroll(patient=retry)

    def _forget_server(self, err: EstError) -> None:
        """After a failed attempt, browse again if mDNS found the server.

        It could not be reached, or another device (without the CA) answers at its address now.
        """
        if isinstance(err, ServerNotFound | FingerprintMismatch) and self.config.server is None:
            self._server = None  # the hub may have moved

    async def _current(self) -> tuple[x509.Certificate, PrivateKeyTypes]:
        current = await asyncio.to_thread(self.store.current)
        if current is None:
            raise ValueError(f"{self.store.certificate_path} disappeared")
        return current

    # --- finding and trusting the server ------------------------------------------------------------

    async def _connection(self) -> tuple[EstServer, x509.Certificate]:
        server = self._server or self.config.server
        if server is None:
            server, self._ca = await self._locate()
        self._server = server
        if self._ca is None:
            self._ca = await self._trust(server)
        return server, self._ca

    async def _locate(self, *, trust: bool = True) -> tuple[EstServer, x509.Certificate | None]:
        """Browse, then take the first server that proves to hold the CA this appliance expects.

        Without ``trust`` a lone server is taken as found, its CA not fetched (None): the PIN exchange
        authenticates it.
        """
        pinned = await asyncio.to_thread(self.store.pinned_ca)
        expected = self._expected_fingerprint(pinned)
        timeout = self.config.discovery_timeout
        self._report(f"looking for an EST server ({SERVICE_TYPE}) on the local network ...")
        servers = await browse(within=timeout)
        candidates = candidate_servers(servers, expected)
        if not servers:
            raise ServerNotFound(
                f"no EST server announced itself within {timeout:g} s "
                "(is Home Assistant running with EST Appliance Pairing? or give --server URL)"
            )
        if not candidates:
            raise ServerNotFound(
                f"{len(servers)} EST servers answer ({'; '.join(map(str, servers))}): "
                "choose one with --server URL or --ca-fingerprint"
            )
        if len(candidates) == 1:  # its own error says best what is wrong with it
            self._report(f"found EST server {candidates[0]}")
            return candidates[0], await self._trust(candidates[0]) if trust else None
        skipped: list[str] = []
        for server in candidates:  # an announcement is anyone's: a copied fingerprint proves nothing
            self._report(f"found EST server {server}")
            try:
                ca = await self._trust(server)
                if pinned is not None:  # not contacted yet: it must show a certificate from the CA
                    async with _reaching(server), self._client(server, ca) as client:
                        await client.cacerts()
            except (FingerprintMismatch, CAFailure, ServerNotFound, ProtocolError) as err:
                self._report(f"skipping {server}: {err}")
                skipped.append(server.name)
                continue
            return server, ca
        raise ServerNotFound(
            f"none of the {len(candidates)} EST servers found holds the expected CA ({', '.join(skipped)})"
        )

    async def _trust(self, server: EstServer) -> x509.Certificate:
        """The pinned CA; else the server's, checked against the owner's fingerprint or trusted once."""
        pinned = await asyncio.to_thread(self.store.pinned_ca)
        if pinned is not None:
            self._compare_hint(server, self._check_pinned(pinned))
            return pinned
        async with _reaching(server):
            try:
                bootstrap = await EstClient.fetch_ca(
                    server.base_url, expected_fingerprint=self._expected, label=server.label
                )
            except (ProtocolError, UnknownResource) as err:  # a mistyped URL: another service, a label
                raise _not_an_est_server(server, err) from None
        spaced = format_fingerprint(bootstrap.fingerprint)
        if bootstrap.verified_out_of_band:
            self._report(f"the server's CA matches the expected fingerprint (SHA-256 {spaced})")
        else:
            self._report(
                f"trusting the server's CA on first use: SHA-256 {spaced} -- compare it with the CA "
                f"fingerprint Home Assistant shows; it stays pinned in {self.store.ca_path}"
            )
        self._compare_hint(server, bootstrap.fingerprint)
        await asyncio.to_thread(self.store.pin_ca, bootstrap.ca_certificate)
        return bootstrap.ca_certificate

    def _expected_fingerprint(self, pinned: x509.Certificate | None) -> str | None:
        """The CA fingerprint to require: the owner's, else the pinned CA's; None before either."""
        return self._expected or (certificate_fingerprint(pinned) if pinned is not None else None)

    def _check_pinned(self, pinned: x509.Certificate) -> str:
        """The pinned CA's fingerprint; FingerprintMismatch if the owner gave another one."""
        fingerprint = certificate_fingerprint(pinned)
        expected = self._expected
        if expected is not None and expected != fingerprint:
            raise FingerprintMismatch(
                f"the CA pinned in {self.store.ca_path} has SHA-256 {format_fingerprint(fingerprint)}, "
                f"not {format_fingerprint(expected)}; remove {self.store.directory} to pair with another hub"
            )
        return fingerprint

    def _compare_hint(self, server: EstServer, fingerprint: str) -> None:
        if server.ca_fingerprint is not None and server.ca_fingerprint != fingerprint:
            self._report(
                f"warning: {server.name} announces CA SHA-256 "
                f"{format_fingerprint(server.ca_fingerprint, groups=_SHORT_FINGERPRINT)} ..., "
                f"but this appliance trusts {format_fingerprint(fingerprint, groups=_SHORT_FINGERPRINT)} ..."
            )

    @staticmethod
    def _client(server: EstServer, ca: x509.Certificate) -> EstClient:
        return EstClient(server.base_url, ca, label=server.label)


async def _without_exchange(server: EstServer) -> EstError:
    """Why a server that offers no PIN exchange is refused: an older hub, or no EST server at all.

    A mistyped URL (another service, a label the hub does not have) offers no exchange either; one
    provisional /cacerts tells it from a hub, which --legacy-basic could then reach.
    """
    try:
        async with _reaching(server):
            await EstClient.fetch_ca(server.base_url, label=server.label)
    except (ProtocolError, UnknownResource) as err:
        return _not_an_est_server(server, err)
    except ServerNotFound as err:
        return err
    return ExchangeNotOffered(
        f"{server} does not offer the PIN exchange, and this appliance sends its PIN no other way "
        "(an older hub: --legacy-basic allows HTTP Basic, which a server that is not the hub could read)"
    )


def _not_an_est_server(server: EstServer, err: EstError) -> ServerNotFound:
    path = f"{EST_PATH}/{server.label}" if server.label else EST_PATH
    return ServerNotFound(
        f"{server.base_url} answers, but not as an EST server: GET {path}/cacerts gave {err}"
    )


@asynccontextmanager
async def _reaching(server: EstServer) -> AsyncIterator[None]:
    """Network failures as the library's errors, so that callers need to know one hierarchy."""
    try:
        yield
    except aiohttp.ClientConnectorCertificateError as err:
        raise FingerprintMismatch(
            f"{server.base_url} presented a TLS certificate the trusted CA did not issue for it "
            f"({err.certificate_error})"
        ) from None
    except (aiohttp.ClientConnectionError, TimeoutError) as err:
        reason = str(err) or type(err).__name__
        raise ServerNotFound(f"cannot reach the EST server at {server.base_url} ({reason})") from None
    except aiohttp.ClientError as err:
        raise ProtocolError(f"{server.base_url}: {err}") from None


def _describe(certificate: x509.Certificate) -> str:
    return (
        f"{certificate.subject.rfc4514_string()}, serial {certificate.serial_number:x}, "
        f"valid until {certificate.not_valid_after_utc.isoformat(timespec='seconds')}"
    )


def _now() -> datetime:
    return datetime.now(UTC)


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def _sleep_until(moment: datetime) -> None:
    # A wall-clock deadline: asyncio's monotonic clock stops while the machine is suspended.
    while (left := (moment - _now()).total_seconds()) > 0:
        await _sleep(min(left, _LONGEST_SLEEP))
