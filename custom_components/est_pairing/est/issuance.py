"""Issuance policy: which names and usages an approved appliance's certificate may carry.

Nothing a request asks for is copied blindly: the subject is always ``CN=<appliance id>``, and the
one alternative name an appliance may get, ``<id>.local``, is written from its id, never a name the
server answers to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
import re

from cryptography import x509

from .ca import IssuedName
from .csr import ApplianceDetails, CertificateRequest, extension_value
from .errors import MalformedRequest, NotAllowed
from .homenet import MDNS_SUFFIX, appliance_dns_name
from .limits import DEFAULT_VALIDITY_DAYS, MAX_APPLIANCE_ID_LENGTH, MAX_SERVER_AUTH_DAYS

# One DNS label (RFC 1035: at most 63 characters), so that ``<id>.local`` is the appliance's only name.
_APPLIANCE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_APPLIANCE_ID_LENGTH - 1}}}")
# What older releases accepted, dots included: appliances registered then still authenticate.
_STORED_APPLIANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_appliance_id(appliance_id: str) -> str:
    """A new appliance id is one DNS label: 1-63 letters, digits, ``_`` or ``-``; it becomes a CN.

    No dot: ``oven.local`` or ``login.microsoftonline.com`` would be names of their own, not ids.
    """
    if not _APPLIANCE_ID.fullmatch(appliance_id):
        raise MalformedRequest(
            f"appliance id must be 1-{MAX_APPLIANCE_ID_LENGTH} letters, digits, '_' or '-', starting with "
            "a letter or digit, with no '.' (the appliance is named <id>.local)"
        )
    return appliance_id


def check_claimed_id(appliance_id: str) -> str:
    """An id a request may claim: a new one's syntax, or one an older release registered (with dots).

    Whether an id of the older kind is known is the enrollment policy's to say.
    """
    if _STORED_APPLIANCE_ID.fullmatch(appliance_id):  # the new syntax is part of it
        return appliance_id
    return check_appliance_id(appliance_id)


def appliance_id_from(text: str | None, fallback: str) -> str:
    """An appliance id made from free text (a factory certificate's serial number or CN)."""
    candidate = re.sub(r"[^A-Za-z0-9_-]+", "-", text or "").strip("-_")
    return candidate[:MAX_APPLIANCE_ID_LENGTH].rstrip("-_") or fallback


def factory_appliance_id(details: ApplianceDetails, fingerprint: str) -> str:
    """The appliance id a factory certificate stands for: its serial number or name, else its fingerprint."""
    return appliance_id_from(details.serial_number or details.name, fallback=f"factory-{fingerprint[:12]}")


def appliance_names(appliance_id: str) -> frozenset[str]:
    """The DNS names an appliance's id stands for, compared case-folded without a trailing dot.

    ``oven`` stands for ``oven`` and ``oven.local``; so does ``OVEN.``. Two appliances whose names
    meet would each hold a certificate a client could take for the other's.
    """
    name = appliance_id.casefold().rstrip(".")
    return frozenset({name, name.removesuffix(MDNS_SUFFIX), f"{name.removesuffix(MDNS_SUFFIX)}{MDNS_SUFFIX}"})


@dataclass(frozen=True, slots=True)
class Grant:
    """What a certificate will carry."""

    name: IssuedName
    server_auth: bool


class IssuancePolicy:
    """Decides the subject, names and usages of appliance certificates."""

    def __init__(
        self,
        *,
        validity_days: int = DEFAULT_VALIDITY_DAYS,
        allow_server_auth: bool = True,
        reserved_names: Iterable[str] = (),
    ) -> None:
        self.validity_days = validity_days
        self.allow_server_auth = allow_server_auth
        self._reserved: frozenset[str] = frozenset()
        self.reserved_names = reserved_names

    @property
    def reserved_names(self) -> frozenset[str]:
        """Names no appliance may take: the server's own host names and addresses."""
        return self._reserved

    @reserved_names.setter
    def reserved_names(self, names: Iterable[str]) -> None:
        # Each name with and without ``.local``: an appliance named ``localhost`` would get the name
        # ``localhost.local`` as its subjectAltName, one a client dialling the server may use.
        self._reserved = frozenset().union(*map(appliance_names, names))

    def check_reserved(self, appliance_id: str) -> None:
        """Refuse an appliance id that stands for one of the server's own names (any case, dot or not)."""
        if appliance_names(appliance_id) & self._reserved:
            raise NotAllowed(f"appliance id {appliance_id!r} is a name this server answers to")

    def grant(self, request: CertificateRequest, appliance_id: str) -> Grant:
        """The names and usages an approved request gets, or NotAllowed with the reason."""
        self.check_reserved(appliance_id)
        if request.common_name is not None and request.common_name != appliance_id:
            raise NotAllowed(
                f"certificate request names {request.common_name!r} "
                f"but the credential is for {appliance_id!r}"
            )
        if request.ip_addresses:
            raise NotAllowed("certificates name appliances, not IP addresses (addresses change)")
        # Any of its own names (``oven``, ``Oven.LOCAL.``) is granted as the one it has on the home
        # network, written from the id: ``oven.local``. An id that cannot be a DNS label gets none.
        own = appliance_names(appliance_id)
        for dns_name in request.dns_names:
            if dns_name.casefold().rstrip(".") not in own:
                raise NotAllowed(
                    f"certificate request asks for the name {dns_name!r}; "
                    f"an appliance may only be named {appliance_id}{MDNS_SUFFIX}"
                )
        granted = appliance_dns_name(appliance_id) if request.dns_names else None
        names = (granted,) if granted else ()
        if request.wants_server_auth and not self.allow_server_auth:
            raise NotAllowed("this server does not issue serverAuth certificates")
        # A server certificate without a name cannot be checked against one: serverAuth needs a name.
        return Grant(IssuedName(appliance_id, tuple(names)), request.wants_server_auth and bool(names))

    def lifetime(self, grant: Grant) -> timedelta:
        """How long a certificate is valid: the owner's choice; with serverAuth at most 825 days.

        Apple platforms refuse a TLS server certificate valid longer, whoever issued it: an
        appliance serving TLS to an iPhone with a longer one could never be reached.
        """
        days = min(self.validity_days, MAX_SERVER_AUTH_DAYS) if grant.server_auth else self.validity_days
        return timedelta(days=days)

    def grant_renewal(self, request: CertificateRequest, current: x509.Certificate) -> Grant:
        """Re-enrollment (§4.2.2): Subject and SubjectAltName must equal the current certificate's."""
        if request.subject != current.subject:
            raise NotAllowed("re-enrollment request subject differs from the current certificate")
        if _alt_names(request.csr.extensions) != _alt_names(current.extensions):
            raise NotAllowed("re-enrollment request alternative names differ from the current certificate")
        common_name = request.common_name or ""
        return self.grant(request, common_name)


def _alt_names(extensions: x509.Extensions) -> frozenset[x509.GeneralName]:
    names = extension_value(extensions, x509.SubjectAlternativeName)
    return frozenset(names) if names is not None else frozenset()
