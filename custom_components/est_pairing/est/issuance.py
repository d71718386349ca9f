"""Issuance policy: which names and usages an approved appliance's certificate may carry.

Nothing a request asks for is copied blindly: the subject is always ``CN=<appliance id>``, alternative
names are granted only when they name the appliance itself, and never a name the server answers to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
import re

from cryptography import x509

from .ca import IssuedName
from .csr import CertificateRequest, extension_value, is_host_name
from .errors import MalformedRequest, NotAllowed
from .limits import DEFAULT_VALIDITY_DAYS, MAX_APPLIANCE_ID_LENGTH, MAX_SERVER_AUTH_DAYS

_APPLIANCE_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_APPLIANCE_ID_LENGTH - 1}}}")
_MDNS_SUFFIX = ".local"


def check_appliance_id(appliance_id: str) -> str:
    """An appliance id is 1-64 characters of letters, digits, ``.``, ``_``, ``-``; it becomes a CN."""
    if not _APPLIANCE_ID.fullmatch(appliance_id):
        raise MalformedRequest(
            "appliance id must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return appliance_id


def appliance_id_from(text: str | None, fallback: str) -> str:
    """An appliance id made from free text (a factory certificate's serial number or CN)."""
    candidate = re.sub(r"[^A-Za-z0-9._-]+", "-", text or "").strip("-._")
    return candidate[:MAX_APPLIANCE_ID_LENGTH] or fallback


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
        # Each name with and without ``.local``: an appliance named ``localhost.local`` would get the
        # name ``localhost.local`` as its subjectAltName, one a client dialling the server may use.
        reserved = {name.casefold().rstrip(".") for name in names}
        bare = {name.removesuffix(_MDNS_SUFFIX) for name in reserved}
        self._reserved = frozenset(reserved | bare | {f"{name}{_MDNS_SUFFIX}" for name in bare})

    def check_reserved(self, appliance_id: str) -> None:
        """Refuse an appliance id that is one of the server's own names (any case, trailing dot or not)."""
        if appliance_id.casefold().rstrip(".") in self._reserved:
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
        # The names are written from the id, not copied: no trailing dot, no case variant, no repeat.
        allowed = {
            appliance_id.casefold(): appliance_id,
            f"{appliance_id}{_MDNS_SUFFIX}".casefold(): f"{appliance_id}{_MDNS_SUFFIX}",
        }
        names: dict[str, None] = {}
        for dns_name in request.dns_names:
            if (granted := allowed.get(dns_name.casefold().rstrip("."))) is None:
                raise NotAllowed(
                    f"certificate request asks for the name {dns_name!r}; "
                    f"an appliance may only be named {appliance_id}{_MDNS_SUFFIX}"
                )
            if not is_host_name(granted):
                raise NotAllowed(
                    f"certificate request asks for the name {dns_name!r}, which is not a valid DNS "
                    "name (RFC 1123); ask for none, or use an appliance id that is a host name"
                )
            names[granted] = None
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
