"""What a certificate request asks for: its key, names and usages, and the appliance details it carries."""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import MalformedRequest, NotAllowed
from .fingerprints import public_key_fingerprint
from .limits import MAX_RSA_BITS, MAX_RSA_EXPONENT_BITS, MAX_SAN_ENTRIES, MAX_SUBJECT_BYTES, MIN_RSA_BITS

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ACCEPTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
_NAME_ATTRIBUTE = x509.ObjectIdentifier("2.5.4.41")  # id-at-name: a friendly name
_DETAIL_LENGTH = 64
# Control characters (C0, C1), line and paragraph separators, and the invisible format characters
# that reorder or hide text: bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069), marks
# (U+200E-200F, U+061C), zero-width ones (U+200B-200D, U+2060-2064, U+FEFF), the soft hyphen, the
# Mongolian vowel separator, interlinear annotation and tag characters. Shown, they make a name read
# as another ("Front door lock\u202e\u200bkcol") or hide what it says.
_NOT_DISPLAYABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]"
)


def displayable(text: str) -> str:
    """Text someone chose, as it may be shown to the owner: trimmed, without what cannot be shown.

    Control characters go, and the invisible ones that reorder or hide text (``_NOT_DISPLAYABLE``).
    """
    return _NOT_DISPLAYABLE.sub("", text).strip()


@dataclass(frozen=True, slots=True)
class ApplianceDetails:
    """What an appliance says about itself (request subject or factory certificate), for display only.

    The appliance-maker profile (docs/appliance-profile.md) maps them to subject attributes:
    name -> id-at-name (2.5.4.41), model -> OU, manufacturer -> O, serial number -> serialNumber.
    """

    name: str | None = None
    model: str | None = None
    manufacturer: str | None = None
    serial_number: str | None = None

    def __post_init__(self) -> None:
        # Every way details come in (a request, a factory certificate, the owner, stored approvals)
        # passes here: what is kept is displayable, an empty field is None.
        for attribute in ("name", "model", "manufacturer", "serial_number"):
            if (value := getattr(self, attribute)) is not None:
                object.__setattr__(self, attribute, displayable(value) or None)

    @classmethod
    def from_name(cls, subject: x509.Name) -> ApplianceDetails:
        """Pick the details out of an X.509 name, trimmed and stripped of what cannot be shown."""
        return _details(_first_values(subject))


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """A PKCS#10 request that passed the checks every policy shares."""

    csr: x509.CertificateSigningRequest
    public_key: CertificatePublicKeyTypes
    key_fingerprint: str
    key_description: str
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]
    wants_server_auth: bool
    details: ApplianceDetails

    @property
    def subject(self) -> x509.Name:
        """The subject exactly as requested."""
        return self.csr.subject


def inspect_request(csr: x509.CertificateSigningRequest) -> CertificateRequest:
    """Check a signature-verified request for what no policy accepts; describe what it asks for."""
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        raise MalformedRequest("certificate request key type is not supported") from None
    key_description = check_key(public_key)
    try:
        subject = csr.subject  # parsed lazily: undecodable strings and unknown string types raise here
    except (ValueError, TypeError, KeyError):
        raise MalformedRequest("certificate request subject cannot be decoded") from None
    # The subject is part of the signed request: a request under the bound has a subject under it too.
    if len(csr.tbs_certrequest_bytes) > MAX_SUBJECT_BYTES and len(subject.public_bytes()) > MAX_SUBJECT_BYTES:
        raise MalformedRequest(f"certificate request subject is over {MAX_SUBJECT_BYTES} bytes")
    try:
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise MalformedRequest("certificate request extensions cannot be parsed") from None
    _refuse_ca_powers(extensions)
    dns_names, ip_addresses = _requested_names(extensions)
    usages = extension_value(extensions, x509.ExtendedKeyUsage)
    wants_server_auth = usages is not None and ExtendedKeyUsageOID.SERVER_AUTH in usages
    values = _first_values(subject)
    common_name = values.get(NameOID.COMMON_NAME)
    return CertificateRequest(
        csr=csr,
        public_key=public_key,
        key_fingerprint=public_key_fingerprint(public_key),
        key_description=key_description,
        common_name=common_name if isinstance(common_name, str) and common_name else None,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        wants_server_auth=wants_server_auth or bool(dns_names or ip_addresses),
        details=_details(values),
    )


def describe_key(public_key: CertificatePublicKeyTypes) -> str:
    """A short human description: ``EC P-256``, ``RSA 2048``, ``Ed25519``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = public_key.curve.name
        return f"EC {_ACCEPTED_CURVES.get(curve, curve)}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA {public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(public_key).__name__


def _check_rsa_key(public_key: rsa.RSAPublicKey) -> None:
    """Refuse RSA keys outside the accepted sizes, or with an exponent that makes checking costly.

    Checking a signature costs one modular squaring per bit of the exponent: 17 for 65537, 3,071 for
    the largest exponent a 3072-bit key can have (4.5 ms of event loop per request).
    """
    if not MIN_RSA_BITS <= public_key.key_size <= MAX_RSA_BITS:
        raise MalformedRequest(
            f"certificate request has an RSA {public_key.key_size}-bit key; "
            f"RSA keys must be {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
        )
    if public_key.public_numbers().e.bit_length() > MAX_RSA_EXPONENT_BITS:
        raise MalformedRequest(
            f"certificate request's RSA public exponent is over 2^{MAX_RSA_EXPONENT_BITS}; use 65537"
        )


def check_key(public_key: CertificatePublicKeyTypes) -> str:
    """Refuse a key no policy accepts; its description if accepted.

    Called before the signature of a request signed otherwise than with ECDSA or Ed25519 is checked
    (the check's cost grows with the key: an RSA exponent, or a DSA modulus of 10,000 bits that costs
    16 ms of event loop, for a key refused anyway), and again when any request is inspected.
    """
    description = describe_key(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in _ACCEPTED_CURVES:
            raise MalformedRequest(
                f"certificate request key uses curve {public_key.curve.name}; use P-256 or P-384"
            )
    elif isinstance(public_key, rsa.RSAPublicKey):
        _check_rsa_key(public_key)
    elif not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise MalformedRequest(f"certificate request key type {description} is not supported")
    return description


@dataclass(frozen=True, slots=True)
class CsrAttribute:
    """One AttrOrOID of /csrattrs (§4.5): a bare OID (``values`` empty) or an attribute with DER values."""

    oid: x509.ObjectIdentifier
    values: tuple[bytes, ...] = ()


def extension_value[T: x509.ExtensionType](extensions: x509.Extensions, kind: type[T]) -> T | None:
    """The value of the extension of this type, or None.

    ``Extensions.get_extension_for_class`` raises when there is none, which is the common case for
    appliance requests: a scan costs less than building and catching an exception.
    """
    for extension in extensions:
        if isinstance(extension.value, kind):
            return extension.value
    return None


def _refuse_ca_powers(extensions: x509.Extensions) -> None:
    constraints = extension_value(extensions, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise NotAllowed("certificate request asks to be a CA (basicConstraints CA:TRUE)")
    usage = extension_value(extensions, x509.KeyUsage)
    if usage is not None and (usage.key_cert_sign or usage.crl_sign):
        raise NotAllowed("certificate request asks for keyCertSign or cRLSign")


def _requested_names(extensions: x509.Extensions) -> tuple[tuple[str, ...], tuple[IPAddress, ...]]:
    names = extension_value(extensions, x509.SubjectAlternativeName)
    if names is None:
        return (), ()
    if len(names) > MAX_SAN_ENTRIES:
        raise MalformedRequest(
            f"certificate request asks for {len(names)} alternative names; "
            f"at most {MAX_SAN_ENTRIES} are accepted"
        )
    dns_names = tuple(names.get_values_for_type(x509.DNSName))
    ip_addresses: tuple[IPAddress, ...] = tuple(
        address
        for address in names.get_values_for_type(x509.IPAddress)
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
    )
    if len(dns_names) + len(ip_addresses) != len(names):
        raise NotAllowed("certificate request asks for alternative names other than DNS or IP")
    return dns_names, ip_addresses


type _FirstValues = dict[x509.ObjectIdentifier, str | bytes]


def _first_values(name: x509.Name) -> _FirstValues:
    """Each attribute type's first value, in one pass over the name."""
    values: _FirstValues = {}
    for attribute in name:
        values.setdefault(attribute.oid, attribute.value)
    return values


def _details(values: _FirstValues) -> ApplianceDetails:
    return ApplianceDetails(
        name=_detail(values, _NAME_ATTRIBUTE) or _detail(values, NameOID.COMMON_NAME),
        model=_detail(values, NameOID.ORGANIZATIONAL_UNIT_NAME),
        manufacturer=_detail(values, NameOID.ORGANIZATION_NAME),
        serial_number=_detail(values, NameOID.SERIAL_NUMBER),
    )


def _detail(values: _FirstValues, oid: x509.ObjectIdentifier) -> str | None:
    value = values.get(oid)
    if not isinstance(value, str):
        return None
    return displayable(value)[:_DETAIL_LENGTH] or None
