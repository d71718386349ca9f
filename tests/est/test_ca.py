"""The household CA, the listener's certificate, and what a request may ask for."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA, RevokedCertificate
from custom_components.est_pairing.est.csr import ApplianceDetails, inspect_request
from custom_components.est_pairing.est.errors import MalformedRequest, NotAllowed
from custom_components.est_pairing.est.fingerprints import public_key_fingerprint
from custom_components.est_pairing.est.issuance import (
    IssuancePolicy,
    appliance_id_from,
    check_appliance_id,
    check_claimed_id,
)
from custom_components.est_pairing.est.limits import CA_VALIDITY_DAYS
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames
from est_tools.appliance.client import build_csr

from . import forge

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.mark.parametrize(("curve", "size"), [("P-256", 256), ("P-384", 384)])
def test_household_ca_profile(curve: str, size: int) -> None:
    ca = HouseholdCA.create("Smith", curve=curve, now=NOW)  # type: ignore[arg-type]
    certificate = ca.certificate
    assert certificate.subject.rfc4514_string() == "CN=Smith Household CA"
    assert certificate.issuer == certificate.subject
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size == size
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    constraint = certificate.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraint.critical and constraint.value.excluded_subtrees is None
    assert set(constraint.value.permitted_subtrees or ()) == {
        x509.DNSName("local"),
        x509.DNSName("home.arpa"),
        *(
            x509.IPAddress(ipaddress.ip_network(network))
            for network in [
                "127.0.0.0/8",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "169.254.0.0/16",
                "100.64.0.0/10",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
            ]
        ),
    }
    lifetime = certificate.not_valid_after_utc - NOW
    assert timedelta(days=CA_VALIDITY_DAYS - 1) < lifetime <= timedelta(days=CA_VALIDITY_DAYS)
    certificate.verify_directly_issued_by(certificate)


@pytest.mark.parametrize(
    ("name", "common_name"),
    [
        ("x" * 51, "x" * 51 + " Household CA"),  # 64 bytes: the longest CN
        ("x" * 60, "x" * 51 + " Household CA"),
        ("日" * 20, "日" * 17 + " Household CA"),  # 3 bytes each: cut between characters
        ("ä" * 30, "ä" * 25 + " Household CA"),
        ("x" * 50 + "e\u0301", "x" * 50 + " Household CA"),  # no "e" without its accent
        ("x" * 48 + "e\u0301", "x" * 48 + "e\u0301 Household CA"),  # 51 bytes: fits
        ("Ho\tme\n", "Ho me Household CA"),  # control characters (pasted) become spaces
    ],
)
def test_a_long_household_name_is_shortened_to_fit_the_common_name(name: str, common_name: str) -> None:
    subject = HouseholdCA.create(name).certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name


def test_pem_round_trip_and_mismatch(ca: HouseholdCA) -> None:
    certificate_pem, key_pem = ca.to_pem()
    assert HouseholdCA.from_pem(certificate_pem, key_pem).fingerprint == ca.fingerprint
    other_key = HouseholdCA.create("Other").to_pem()[1]
    with pytest.raises(ValueError, match="does not match"):
        HouseholdCA.from_pem(certificate_pem, other_key)


def test_only_an_ec_key_can_be_the_household_ca_key(ca: HouseholdCA) -> None:
    certificate_pem, _ = ca.to_pem()
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TypeError, match="must be an EC key"):
        HouseholdCA.from_pem(certificate_pem, rsa_pem)
    assert repr(ca) == f"HouseholdCA('CN=Test Household CA', sha256={ca.fingerprint})"


def test_many_crl_urls_keep_each_certificate_pointing_at_its_own(ca: HouseholdCA) -> None:
    """The CA keeps a bounded set of certificate templates; starting over loses nothing."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    for round_ in range(2):
        for port in range(8000, 8040):
            url = f"http://hub.local:{port}/crl"
            certificate = forge.issued_by(ca, key, server_auth=bool(round_), not_before=NOW, crl_url=url)
            points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            assert [point.full_name[0].value for point in points if point.full_name] == [url]


def test_appliance_certificates_never_outlive_the_ca(ca: HouseholdCA) -> None:
    certificate = forge.issued_by(
        ca,
        ed25519.Ed25519PrivateKey.generate().public_key(),
        not_before=NOW,
        lifetime=timedelta(days=365 * 40),
    )
    assert certificate.not_valid_after_utc == ca.not_valid_after
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not usage.key_agreement  # Ed25519 signs only
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert ca.issued(certificate)
    assert not HouseholdCA.create("Other").issued(certificate)


def issued_of_kind(
    ca: HouseholdCA, public_key: CertificatePublicKeyTypes, *, server_auth: bool, crl_url: str | None
) -> x509.Certificate:
    """An appliance certificate of one kind: serverAuth (named oven.local) or not, a CRL pointer or not."""
    return forge.issued_by(
        ca,
        public_key,
        dns_names=("oven.local",) if server_auth else (),
        server_auth=server_auth,
        not_before=NOW,
        crl_url=crl_url,
    )


def test_end_entity_kinds_do_not_share_extensions(ca: HouseholdCA) -> None:
    """Certificates of each kind get their own usages and CRL pointer, whatever was issued before."""

    ec_key, ed_key = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    kinds: list[tuple[CertificateIssuerPrivateKeyTypes, bool, str | None]] = [
        (ec_key, True, "http://hub.local:8445/crl"),
        (ed_key, False, None),
        (ec_key, False, "http://hub.local:8445/crl"),
        (ec_key, False, "http://other.local:8445/crl"),
        (ec_key, True, None),
    ]
    for _ in range(2):  # the second time round, every kind has been built before
        for key, server_auth, crl_url in kinds:
            certificate = issued_of_kind(ca, key.public_key(), server_auth=server_auth, crl_url=crl_url)
            extensions = certificate.extensions
            eku = list(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            wanted = [ExtendedKeyUsageOID.CLIENT_AUTH] + (
                [ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else []
            )
            assert eku == wanted
            usage = extensions.get_extension_for_class(x509.KeyUsage).value
            assert usage.key_agreement == isinstance(key, ec.EllipticCurvePrivateKey)
            points = [e.value for e in extensions if isinstance(e.value, x509.CRLDistributionPoints)]
            assert [p[0].full_name[0].value for p in points] == ([crl_url] if crl_url else [])
            names = [e.value for e in extensions if isinstance(e.value, x509.SubjectAlternativeName)]
            assert [n.get_values_for_type(x509.DNSName) for n in names] == (
                [["oven.local"]] if server_auth else []
            )
            assert certificate.subject.rfc4514_string() == "CN=oven"
            assert certificate.public_key() == key.public_key()
            assert ca.issued(certificate)


def test_fixed_extensions_kept_encoded_give_the_certificate_the_extension_objects_would(
    ca: HouseholdCA,
) -> None:
    """A template holds its fixed extensions as cryptography encoded them once; nothing else changes."""
    key = ec.generate_private_key(ec.SECP256R1())
    for server_auth, crl_url in ((True, "http://hub.local:8445/crl"), (False, None)):
        certificate = issued_of_kind(ca, key.public_key(), server_auth=server_auth, crl_url=crl_url)
        rebuilt = x509.CertificateBuilder(
            issuer_name=certificate.issuer,
            subject_name=certificate.subject,
            public_key=key.public_key(),
            serial_number=certificate.serial_number,
            not_valid_before=certificate.not_valid_before_utc,
            not_valid_after=certificate.not_valid_after_utc,
            extensions=list(certificate.extensions),  # decoded into extension objects, encoded afresh
        ).sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        assert rebuilt.tbs_certificate_bytes == certificate.tbs_certificate_bytes
        assert not any(isinstance(e.value, x509.UnrecognizedExtension) for e in certificate.extensions)


def test_subject_key_identifier_is_the_key_fingerprint(ca: HouseholdCA) -> None:
    """RFC 7093 section 2 method 4: SHA-256 of the SubjectPublicKeyInfo, the fingerprint the owner sees."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    fingerprint = public_key_fingerprint(key)
    for given in (None, fingerprint):
        certificate = forge.issued_by(ca, key, not_before=NOW, key_fingerprint=given)
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert not ski.critical
        assert ski.value.digest.hex() == fingerprint
    listener = ListenerIdentity.issue(ca, ListenerNames.from_hosts(["127.0.0.1"]), NOW).certificate
    ski_digest = listener.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski_digest.hex() == public_key_fingerprint(listener.public_key())


def test_crl_lists_revoked_serials(ca: HouseholdCA) -> None:
    crl = ca.sign_crl([RevokedCertificate(1234, NOW, x509.ReasonFlags.key_compromise)], crl_number=7, now=NOW)
    ca_key = ca.certificate.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_key)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    assert crl.get_revoked_certificate_by_serial_number(1234) is not None
    (revoked,) = [entry for entry in crl if entry.serial_number == 1234]
    assert revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.name == ("key_compromise")


def test_crl_entries_without_a_known_reason_carry_no_reason_code(ca: HouseholdCA) -> None:
    """RFC 5280 §5.3.1: no reasonCode rather than "unspecified" (a ledger record without a reason)."""
    entries = [
        RevokedCertificate(1, NOW, x509.ReasonFlags.unspecified),
        RevokedCertificate(2, NOW, x509.ReasonFlags.cessation_of_operation),
    ]
    crl = ca.sign_crl(entries, crl_number=8, now=NOW)
    reasons = {entry.serial_number: [e.value for e in entry.extensions] for entry in crl}
    assert reasons == {1: [], 2: [x509.CRLReason(x509.ReasonFlags.cessation_of_operation)]}


def test_a_crl_is_never_dated_before_a_revocation_it_lists(ca: HouseholdCA) -> None:
    """thisUpdate is backdated five minutes for slow clocks, but not to before its newest entry."""
    older = RevokedCertificate(1, NOW - timedelta(hours=1), x509.ReasonFlags.superseded)
    crl = ca.sign_crl([older], crl_number=9, now=NOW)
    assert crl.last_update_utc == NOW.replace(microsecond=0) - timedelta(minutes=5)

    just_now = RevokedCertificate(
        2, NOW.replace(microsecond=0) - timedelta(seconds=30), x509.ReasonFlags.unspecified
    )
    crl = ca.sign_crl([older, just_now], crl_number=10, now=NOW)
    assert all(entry.revocation_date_utc <= crl.last_update_utc for entry in crl)
    assert crl.last_update_utc == just_now.revoked_at


def test_listener_certificate(ca: HouseholdCA) -> None:
    names = ListenerNames.from_hosts(
        [
            *(
                "HomeAssistant.local.",
                "homeassistant",
                "127.0.0.1",
                "[::1]",
                "0.0.0.0",
                "homeassistant.local",
            ),
            *("localhost", "8.8.8.8", "2001:db8::7", "192.168.1.2", "fe80::1%eth0"),
        ]
    )
    assert names.dns_names == ("homeassistant.local", "homeassistant", "localhost")
    identity = ListenerIdentity.issue(ca, names, NOW)
    certificate = identity.certificate
    # Only names and addresses of the home network: not localhost, the bare host name or a public
    # address, which the CA's name constraint would refuse.
    assert identity.names() == ListenerNames(
        ("homeassistant.local",),
        tuple(map(ipaddress.ip_address, ["127.0.0.1", "::1", "192.168.1.2", "fe80::1"])),
    )
    assert certificate.subject.rfc4514_string() == "CN=EST server"  # no host name: see LISTENER_COMMON_NAME
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert identity.covers(names)
    assert not identity.needs_renewal(ca, names, NOW)
    assert identity.needs_renewal(ca, ListenerNames.from_hosts(["10.0.0.2"]), NOW)
    assert not identity.needs_renewal(ca, ListenerNames.from_hosts([*names.all(), "203.0.113.9"]), NOW)
    assert identity.needs_renewal(ca, names, NOW + timedelta(days=380))
    assert identity.needs_renewal(HouseholdCA.create("Other"), names, NOW)
    reloaded = ListenerIdentity.from_pem(*identity.to_pem())
    assert reloaded.certificate == certificate


def test_a_listener_certificate_naming_localhost_is_issued_again(ca: HouseholdCA) -> None:
    """Older releases wrote ``localhost`` and the bare host name into it; the next start drops them."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = ListenerNames.from_hosts(["ha.local", "ha", "localhost", "127.0.0.1"])
    old = ca.issue_listener_certificate(
        public_key=key.public_key(),
        dns_names=names.dns_names,
        ip_addresses=names.ip_addresses,
        not_before=NOW,
        not_after=NOW + timedelta(days=365),
    )
    assert ListenerIdentity(old, key).needs_renewal(ca, names, NOW)


def test_listener_identity_edges(ca: HouseholdCA) -> None:
    identity = ListenerIdentity.issue(ca, ListenerNames.from_hosts(["127.0.0.1"]), NOW)
    certificate_pem, _ = identity.to_pem()
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TypeError, match="must be an EC key"):
        ListenerIdentity.from_pem(certificate_pem, rsa_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    unnamed = forge.issued_by(ca, key.public_key(), not_before=NOW)  # no subjectAltName
    assert ListenerIdentity(unnamed, key).names() == ListenerNames((), ())


def test_reserved_names_include_the_bare_mdns_host() -> None:
    policy = IssuancePolicy(reserved_names=["HomeAssistant.local.", "192.168.1.2"])
    assert {"homeassistant.local", "homeassistant", "192.168.1.2"} <= policy.reserved_names


# --- request inspection and issuance policy ----------------------------------------------------------


def csr_with(
    key: CertificateIssuerPrivateKeyTypes | None = None,
    *,
    subject: x509.Name | None = None,
    extensions: Sequence[x509.ExtensionType] = (),
) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oven")])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    edwards = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    algorithm = None if edwards else hashes.SHA256()
    return builder.sign(key, algorithm)


def key_usage(**flags: bool) -> x509.KeyUsage:
    fields = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(fields | flags))


@pytest.mark.parametrize(
    ("make", "error", "reason"),
    [
        (
            lambda: csr_with(extensions=[x509.BasicConstraints(ca=True, path_length=None)]),
            NotAllowed,
            "CA:TRUE",
        ),
        (lambda: csr_with(extensions=[key_usage(key_cert_sign=True)]), NotAllowed, "keyCertSign"),
        (lambda: csr_with(extensions=[key_usage(crl_sign=True)]), NotAllowed, "cRLSign"),
        (
            lambda: csr_with(
                extensions=[x509.SubjectAlternativeName([x509.DNSName(f"n{i}") for i in range(1000)])]
            ),
            MalformedRequest,
            "1000 alternative names",
        ),
        (
            lambda: csr_with(extensions=[x509.SubjectAlternativeName([x509.RFC822Name("a@b.c")])]),
            NotAllowed,
            "other than DNS or IP",
        ),
        (
            lambda: csr_with(
                subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * 60)] * 1700)
            ),
            MalformedRequest,
            "subject is over",
        ),
        (
            lambda: csr_with(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
            MalformedRequest,
            "RSA 1024",
        ),
        (lambda: csr_with(ec.generate_private_key(ec.SECP256K1())), MalformedRequest, "secp256k1"),
        (lambda: csr_with(ec.generate_private_key(ec.SECP521R1())), MalformedRequest, "secp521r1"),
    ],
)
def test_requests_no_policy_accepts(
    make: Callable[[], x509.CertificateSigningRequest], error: type[Exception], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        inspect_request(make())


type Forger = Callable[[ec.EllipticCurvePrivateKey], bytes]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            lambda k: forge.with_common_name_der(k, b"\x0c\x02\xff\xfe"),
            "subject cannot be decoded",
            id="common name: invalid UTF-8",
        ),
        pytest.param(
            lambda k: forge.with_common_name_der(k, b"\x1e\x03abc"),
            "subject cannot be decoded|not a DER PKCS#10",  # newer cryptography parses names eagerly
            id="common name: odd-length BMPString",
        ),
        pytest.param(
            lambda k: forge.with_common_name_der(k, b"\x02\x01\x05"),
            "subject cannot be decoded",
            id="common name: an INTEGER",
        ),
        pytest.param(
            lambda k: forge.with_common_name_der(k, b"\x03\x02\x00\x01"),
            "subject cannot be decoded",
            id="common name: a BIT STRING",
        ),
        pytest.param(
            lambda k: forge.with_curve(k, "1.2.3.4.5"),
            "unsupported key or signature algorithm",
            id="unknown curve",
        ),
        pytest.param(lambda k: forge.with_version(k, 3), "not a DER PKCS#10", id="version 4"),
        pytest.param(
            lambda k: forge.with_bad_signature(forge.build(k)),
            "signature does not verify",
            id="bad signature",
        ),
    ],
)
def test_validly_signed_requests_with_undecodable_insides(make: Forger, reason: str) -> None:
    """The signature verifies, so only the server's deeper parsing stands between them and a 500."""
    with pytest.raises(MalformedRequest, match=reason):
        inspect_request(wire.load_csr(make(forge.new_key())))


def test_keys_no_request_may_carry() -> None:
    """inspect_request on its own (as after load_csr): an unparsable key, and a key type never accepted."""
    unknown_curve = x509.load_der_x509_csr(forge.with_curve(forge.new_key(), "1.2.3.4.5"))
    with pytest.raises(MalformedRequest, match="key type is not supported"):
        inspect_request(unknown_curve)
    with pytest.raises(MalformedRequest, match="Ed448PublicKey is not supported"):
        inspect_request(csr_with(ed448.Ed448PrivateKey.generate()))


@pytest.mark.parametrize(
    ("key", "description"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "EC P-256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "EC P-384"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA 2048"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "Ed25519"),
    ],
)
def test_accepted_keys(key: Callable[[], CertificateIssuerPrivateKeyTypes], description: str) -> None:
    assert inspect_request(csr_with(key())).key_description == description


def test_details_come_from_the_subject() -> None:
    csr = build_csr(
        ec.generate_private_key(ec.SECP256R1()),
        "oven-7",
        details=ApplianceDetails("Kitchen oven\x07", "OV-200", "Acme", "SN123"),
    )
    request = inspect_request(csr)
    assert request.details == ApplianceDetails("Kitchen oven", "OV-200", "Acme", "SN123")
    assert request.common_name == "oven-7"


def test_the_first_of_repeated_subject_attributes_counts() -> None:
    """The common name checked against the credential and each detail are the first of their type."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, "oven-7"),
            x509.NameAttribute(NameOID.COMMON_NAME, "fridge-2"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Other"),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    request = inspect_request(csr)
    assert request.common_name == "oven-7"
    assert request.details == ApplianceDetails(name="oven-7", manufacturer="Acme")
    assert ApplianceDetails.from_name(subject) == request.details


@pytest.mark.parametrize(
    ("appliance_id", "dns_names", "reason"),
    [
        ("oven", ["homeassistant.local"], "may only be named"),
        ("oven", ["fridge.local"], "may only be named"),
        ("homeassistant", [], "a name this server answers to"),
        ("fridge", [], "names 'oven'"),
    ],
)
def test_issuance_refuses_names_it_did_not_grant(
    appliance_id: str, dns_names: list[str], reason: str
) -> None:
    policy = IssuancePolicy(reserved_names=["homeassistant.local", "192.168.1.2"])
    request = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", dns_names=dns_names))
    with pytest.raises(NotAllowed, match=reason):
        policy.grant(request, appliance_id)


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        (["oven.local"], ("oven.local",)),
        # Written from the id: no case variant, no trailing dot (RFC 5280 §4.2.1.6), no repeat.
        (["Oven.LOCAL."], ("oven.local",)),
        (["OVEN.local", "oven", "oven.local.", "Oven"], ("oven.local",)),
        # A bare name is no name on the home network (nor a fully qualified one): the appliance's
        # own name there is granted in its place.
        (["oven"], ("oven.local",)),
    ],
)
def test_issuance_grants_the_appliance_its_own_name(asked: list[str], granted: tuple[str, ...]) -> None:
    policy = IssuancePolicy()
    request = inspect_request(build_csr(ec.generate_private_key(ec.SECP256R1()), "oven", dns_names=asked))
    grant = policy.grant(request, "oven")
    assert grant.name.common_name == "oven" and grant.name.dns_names == granted
    assert grant.server_auth
    with pytest.raises(NotAllowed, match="serverAuth"):
        IssuancePolicy(allow_server_auth=False).grant(request, "oven")


@pytest.mark.parametrize(
    ("appliance_id", "asked", "granted"),
    [
        # RFC 5280 §4.2.1.6: a dNSName is a host name (RFC 1123), whatever an appliance id allows.
        ("oven.", ["oven.local"], ()),  # a hyphen at a label's end
        ("7", ["7.local", "7"], ("7.local",)),
        ("x" * 63, ["x" * 63 + ".local"], ("x" * 63 + ".local",)),
        ("fridge_1", ["fridge_1.local"], ("fridge_1.local",)),  # mDNS names may have underscores
        # Ids with dots, registered by older releases, keep their certificates but no DNS name.
        ("oven.kitchen", ["oven.kitchen.local"], ()),
        ("192.168.1.7", ["192.168.1.7.local"], ()),
        ("login.microsoftonline.com", ["login.microsoftonline.com"], ()),
    ],
)
def test_only_host_names_of_the_home_network_are_granted(
    appliance_id: str, asked: list[str], granted: tuple[str, ...]
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    request = inspect_request(build_csr(key, appliance_id, dns_names=asked))
    grant = IssuancePolicy().grant(request, appliance_id)
    assert grant.name.dns_names == granted
    assert grant.server_auth == bool(granted)  # serverAuth needs a name


@pytest.mark.parametrize(
    ("appliance_id", "asked"),
    [
        ("oven", ["login.microsoftonline.com"]),
        ("oven", ["oven.example.com"]),
        ("oven", ["oven.home.arpa"]),  # the home network's, but not the name the hub gives it
        ("login", ["login.microsoftonline.com"]),
    ],
)
def test_no_other_name_is_granted(appliance_id: str, asked: list[str]) -> None:
    request = inspect_request(
        build_csr(ec.generate_private_key(ec.SECP256R1()), appliance_id, dns_names=asked)
    )
    with pytest.raises(NotAllowed, match=f"may only be named {appliance_id}.local"):
        IssuancePolicy().grant(request, appliance_id)


def test_server_auth_needs_a_name() -> None:
    """A server certificate naming nothing cannot be checked against a host name: clientAuth only."""
    request = inspect_request(csr_with(extensions=[x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])]))
    assert request.wants_server_auth
    grant = IssuancePolicy().grant(request, "oven")
    assert (grant.name.dns_names, grant.server_auth) == ((), False)


def test_ip_addresses_are_never_granted() -> None:
    csr = csr_with(
        extensions=[x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("10.0.0.7"))])]
    )
    with pytest.raises(NotAllowed, match="IP addresses"):
        IssuancePolicy().grant(inspect_request(csr), "oven")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SN 123/45", "SN-123-45"),
        ("", "fallback"),
        (None, "fallback"),
        ("..x..", "x"),
        ("a" * 100, "a" * 63),
        ("a" * 62 + ".b", "a" * 62),  # cut to one label, without a hyphen at its end
        ("oven.local", "oven-local"),  # never a dot: an id is one DNS label
        ("login.microsoftonline.com", "login-microsoftonline-com"),
        ("SN_7", "SN_7"),
    ],
)
def test_appliance_ids_from_free_text(text: str | None, expected: str) -> None:
    assert appliance_id_from(text, "fallback") == check_appliance_id(expected)


@pytest.mark.parametrize(
    "appliance_id", ["oven.local", "oven.", "login.microsoftonline.com", "a" * 64, "-oven", ""]
)
def test_a_new_appliance_id_is_one_dns_label(appliance_id: str) -> None:
    with pytest.raises(MalformedRequest, match=r"no '\.'"):
        check_appliance_id(appliance_id)


def test_a_request_may_claim_an_id_an_older_release_registered() -> None:
    """Ids with dots were accepted before: their registrations still authenticate (the policy decides)."""
    assert check_claimed_id("oven.kitchen") == "oven.kitchen"
    assert check_claimed_id("a" * 64) == "a" * 64
    with pytest.raises(MalformedRequest, match="appliance id must be"):
        check_claimed_id("oven/../x")
