"""The household CA: create or load the root, issue appliance and listener certificates, sign CRLs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import ipaddress
from typing import Final, Literal
import unicodedata

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .fingerprints import certificate_fingerprint, public_key_fingerprint
from .homenet import name_constraints
from .limits import CA_VALIDITY_DAYS, CRL_VALIDITY_DAYS

type CurveName = Literal["P-256", "P-384"]
type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CURVES: dict[CurveName, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
_BACKDATE = timedelta(minutes=5)  # tolerate appliances whose clocks run a little behind
_END_ENTITY = x509.BasicConstraints(ca=False, path_length=None)
_MAX_TEMPLATES = 16
HOUSEHOLD_CA_SUFFIX: Final = " Household CA"
MAX_COMMON_NAME_BYTES: Final = 64  # RFC 5280 ub-common-name; cryptography counts it in UTF-8 bytes
# The listener is named by its subjectAltName. Its CN is no host name (it has a space): OpenSSL checks
# a CN that looks like one (``127.0.0.1`` does) against the CA's DNS name constraint.
LISTENER_COMMON_NAME: Final = "EST server"
type _TemplateKind = tuple[tuple[x509.ObjectIdentifier, ...], bool, str | None]


def _key_usage(
    *, digital_signature: bool = False, key_agreement: bool = False, certificates_and_crls: bool = False
) -> x509.KeyUsage:
    """A keyUsage with only these bits (the household CA never sets the others)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=certificates_and_crls,
        crl_sign=certificates_and_crls,
        encipher_only=False,
        decipher_only=False,
    )


_CA_USAGE = _key_usage(certificates_and_crls=True)
_SIGNING_USAGE = _key_usage(digital_signature=True)
_EC_USAGE = _key_usage(digital_signature=True, key_agreement=True)  # EC keys may also do ECDH


def household_name(name: str, max_bytes: int | None = None) -> str:
    """The household's name as the CA's name carries it; in at most ``max_bytes`` of UTF-8 if given.

    Control characters (a pasted tab or line break) become spaces and outer spaces go: mDNS refuses
    control characters in an instance name, and a CA's name shows them nowhere. A long name is cut
    between characters: never inside one, nor between a letter and its combining accents (a letter
    whose accent would be cut off goes with it).
    """
    name = "".join(" " if unicodedata.category(c) == "Cc" else c for c in name).strip()
    if max_bytes is None:
        return name
    cut = name.encode()[:max_bytes].decode(errors="ignore")
    while cut and len(cut) < len(name) and unicodedata.combining(name[len(cut)]):
        cut = cut[:-1]
    return cut.rstrip()


def household_ca_name(name: str, *, max_bytes: int = MAX_COMMON_NAME_BYTES) -> str:
    """``<name> Household CA`` in at most ``max_bytes`` of UTF-8; a long name loses its end."""
    name = household_name(name, max_bytes - len(HOUSEHOLD_CA_SUFFIX))
    return f"{name}{HOUSEHOLD_CA_SUFFIX}".lstrip()


@dataclass(frozen=True, slots=True)
class RevokedCertificate:
    """One CRL entry."""

    serial_number: int
    revoked_at: datetime
    reason: x509.ReasonFlags


@dataclass(frozen=True, slots=True)
class IssuedName:
    """Subject and subject-alternative names a certificate will carry, as the policy granted them."""

    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[IPAddress, ...] = ()


class HouseholdCA:
    """A self-signed root that signs every appliance and listener certificate in the household."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.certificate = certificate
        self._private_key = private_key
        self.fingerprint = certificate_fingerprint(certificate)
        self.not_valid_after = certificate.not_valid_after_utc  # when the household CA itself expires
        self._ski = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key())
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski)
        self._templates: dict[_TemplateKind, x509.CertificateBuilder] = {}

    def __repr__(self) -> str:
        return f"HouseholdCA({self.certificate.subject.rfc4514_string()!r}, sha256={self.fingerprint})"

    @classmethod
    def create(cls, name: str, *, curve: CurveName = "P-256", now: datetime | None = None) -> HouseholdCA:
        """Create a new root: EC key, 20 years, CA:TRUE pathlen 0, keyCertSign + cRLSign.

        Its name constraint (critical, as RFC 5280 §4.2.1.10 requires) permits home-network names
        and addresses only (:mod:`.homenet`).
        """
        now = now or datetime.now(UTC)
        key = ec.generate_private_key(_CURVES[curve])
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, household_ca_name(name))])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + timedelta(days=CA_VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_USAGE, critical=True)
            .add_extension(ski, critical=False)
            .add_extension(name_constraints(), critical=True)
            .sign(key, _hash_for(key))
        )
        return cls(certificate, key)

    @classmethod
    def from_pem(cls, certificate_pem: bytes, private_key_pem: bytes) -> HouseholdCA:
        """Load a root written by :meth:`to_pem`."""
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("the household CA key must be an EC key")
        if key.public_key() != certificate.public_key():
            raise ValueError("the household CA key does not match its certificate")
        return cls(certificate, key)

    def to_pem(self) -> tuple[bytes, bytes]:
        """Certificate and unencrypted PKCS#8 key (the caller stores the key 0600)."""
        return (
            self.certificate.public_bytes(serialization.Encoding.PEM),
            self._private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    @property
    def certificate_pem(self) -> bytes:
        """The root certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue_appliance_certificate(
        self,
        *,
        public_key: CertificatePublicKeyTypes,
        name: IssuedName,
        server_auth: bool,
        serial_number: int,
        not_before: datetime,
        not_after: datetime,
        crl_url: str | None,
        key_fingerprint: str | None = None,
    ) -> x509.Certificate:
        """An end-entity certificate for an appliance: clientAuth, serverAuth only if granted.

        ``key_fingerprint`` is :func:`public_key_fingerprint` of ``public_key`` when the caller has
        it already (the registrar does); otherwise it is computed.
        """
        usages = (
            (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)
            if server_auth
            else (ExtendedKeyUsageOID.CLIENT_AUTH,)
        )
        key_agreement = isinstance(public_key, ec.EllipticCurvePublicKey)
        return self._sign_end_entity(
            public_key=public_key,
            key_fingerprint=key_fingerprint or public_key_fingerprint(public_key),
            name=name,
            usages=usages,
            key_agreement=key_agreement,
            serial_number=serial_number,
            not_before=not_before,
            not_after=min(not_after, self.not_valid_after),
            crl_url=crl_url,
        )

    def issue_listener_certificate(
        self,
        *,
        public_key: CertificatePublicKeyTypes,
        dns_names: Sequence[str],
        ip_addresses: Sequence[IPAddress],
        not_before: datetime,
        not_after: datetime,
    ) -> x509.Certificate:
        """The EST listener's own TLS certificate: serverAuth, never keyCertSign."""
        return self._sign_end_entity(
            public_key=public_key,
            key_fingerprint=public_key_fingerprint(public_key),
            name=IssuedName(LISTENER_COMMON_NAME, tuple(dns_names), tuple(ip_addresses)),
            usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
            key_agreement=False,
            serial_number=x509.random_serial_number(),
            not_before=not_before,
            not_after=min(not_after, self.not_valid_after),
            crl_url=None,
        )

    def _sign_end_entity(
        self,
        *,
        public_key: CertificatePublicKeyTypes,
        key_fingerprint: str,
        name: IssuedName,
        usages: tuple[x509.ObjectIdentifier, ...],
        key_agreement: bool,
        serial_number: int,
        not_before: datetime,
        not_after: datetime,
        crl_url: str | None,
    ) -> x509.Certificate:
        builder = (
            self._end_entity_template(usages, key_agreement, crl_url)
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name.common_name)]))
            .public_key(public_key)
            .serial_number(serial_number)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            # RFC 7093 section 2, method 4: the SHA-256 of the SubjectPublicKeyInfo, which is also
            # the key fingerprint the owner is shown.
            .add_extension(x509.SubjectKeyIdentifier(bytes.fromhex(key_fingerprint)), critical=False)
        )
        general_names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in name.dns_names]
        general_names += [x509.IPAddress(address) for address in name.ip_addresses]
        if general_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
        return builder.sign(self._private_key, _hash_for(self._private_key))

    def _end_entity_template(
        self, usages: tuple[x509.ObjectIdentifier, ...], key_agreement: bool, crl_url: str | None
    ) -> x509.CertificateBuilder:
        """The issuer and the extensions that depend only on the certificate's kind, built once per kind.

        Builders are immutable: each certificate adds its own subject, key, serial, validity and
        names to a copy.
        """
        kind = (usages, key_agreement, crl_url)
        template = self._templates.get(kind)
        if template is None:
            template = (
                x509.CertificateBuilder()
                .issuer_name(self.certificate.subject)
                .add_extension(_encoded_once(_END_ENTITY), critical=True)
                .add_extension(_encoded_once(_EC_USAGE if key_agreement else _SIGNING_USAGE), critical=True)
                .add_extension(_encoded_once(x509.ExtendedKeyUsage(list(usages))), critical=False)
                .add_extension(_encoded_once(self._aki), critical=False)
            )
            if crl_url:
                template = template.add_extension(
                    _encoded_once(_crl_distribution_points(crl_url)), critical=False
                )
            if len(self._templates) >= _MAX_TEMPLATES:  # a CRL URL changes seldom; never grow without bound
                self._templates.clear()
            self._templates[kind] = template
        return template

    def sign_crl(
        self, revoked: Iterable[RevokedCertificate], *, crl_number: int, now: datetime
    ) -> x509.CertificateRevocationList:
        """A CRL over every revoked certificate, valid for a week (re-signed before then).

        Its thisUpdate is backdated for clocks that run behind, but never to before a revocation it
        lists: a CRL reports what was known at thisUpdate.
        """
        revoked = list(revoked)
        this_update = min(now, max([now - _BACKDATE, *(entry.revoked_at for entry in revoked)]))
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(this_update)
            .next_update(now + timedelta(days=CRL_VALIDITY_DAYS))
            .add_extension(x509.CRLNumber(crl_number), critical=False)
            .add_extension(self._aki, critical=False)
        )
        for entry in revoked:
            revoked_entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(entry.serial_number)
                .revocation_date(entry.revoked_at)
            )
            # RFC 5280 §5.3.1: no reasonCode rather than the reason "unspecified".
            if entry.reason is not x509.ReasonFlags.unspecified:
                revoked_entry = revoked_entry.add_extension(x509.CRLReason(entry.reason), critical=False)
            builder = builder.add_revoked_certificate(revoked_entry.build())
        return builder.sign(self._private_key, _hash_for(self._private_key))

    def issued(self, certificate: x509.Certificate) -> bool:
        """Whether this CA signed the certificate (signature checked, not just the issuer name)."""
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def _encoded_once(extension: x509.ExtensionType) -> x509.UnrecognizedExtension:
    """An extension as cryptography encodes it, kept encoded: a template's copies carry the DER as is.

    The certificates are byte for byte those the extension objects would give; only the encoding,
    the same for every certificate of a kind, is no longer repeated for each one.
    """
    return x509.UnrecognizedExtension(extension.oid, extension.public_bytes())


def _crl_distribution_points(url: str) -> x509.CRLDistributionPoints:
    """The extension pointing at the CRL (the same for every certificate: part of the template)."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def _hash_for(key: ec.EllipticCurvePrivateKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if key.curve.key_size > 256 else hashes.SHA256()
