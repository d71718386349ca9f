"""Hostile requests and certificates: CSRs that are validly signed yet malformed inside, and worse.

``cryptography`` refuses to build most of these, so they are assembled as DER here and signed with a
real key: the server's signature check passes and its deeper parsing is what gets exercised.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
import math
import secrets
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import char, univ
from pyasn1_modules import rfc2986, rfc3279, rfc5280

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA, IssuedName

_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")  # AlgorithmIdentifier, no parameters
_RSA_WITH_SHA256 = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSAEncryption, NULL
_DSA_WITH_SHA256 = bytes.fromhex("300b0609608648016503040302")  # id-dsa-with-sha256, no parameters


NO_ATTRIBUTES = x509.Name([])  # a subject with nothing after the CN


def der_length(length: int) -> bytes:
    """A DER length field."""
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def tlv(tag: int, body: bytes) -> bytes:
    """One DER element."""
    return bytes([tag]) + der_length(len(body)) + body


def new_key() -> ec.EllipticCurvePrivateKey:
    """The kind of key an appliance makes (P-256)."""
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key_with_exponent(exponent_bits: int, key_size: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key whose public exponent has ``exponent_bits`` bits (generate_private_key offers 3 and
    65537 only): the primes of a fresh key, a large odd exponent coprime to phi, its inverse."""
    numbers = rsa.generate_private_key(public_exponent=65537, key_size=key_size).private_numbers()
    p, q = numbers.p, numbers.q
    phi = (p - 1) * (q - 1)
    exponent = (1 << (exponent_bits - 1)) | 1
    while math.gcd(exponent, phi) != 1:
        exponent += 2
    d = pow(exponent, -1, phi)
    public = rsa.RSAPublicNumbers(exponent, p * q)
    private = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    return private.private_key()


def request_der(csr: x509.CertificateSigningRequest) -> bytes:
    """The CSR as DER."""
    return csr.public_bytes(serialization.Encoding.DER)


def body(der: bytes) -> bytes:
    """An EST request body: base64 wrapped at 64 columns."""
    return wire.encode_base64(der)


def request_info(csr: x509.CertificateSigningRequest) -> bytes:
    """The DER of the signed part (CertificationRequestInfo)."""
    return csr.tbs_certrequest_bytes


def sign_info_rsa(info: bytes, key: rsa.RSAPrivateKey) -> bytes:
    """A CertificationRequest around arbitrary ``info`` bytes, with a valid RSA signature over them."""
    signature = key.sign(info, padding.PKCS1v15(), hashes.SHA256())
    return tlv(0x30, info + _RSA_WITH_SHA256 + tlv(0x03, b"\x00" + signature))


def sign_info(info: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CertificationRequest around arbitrary ``info`` bytes, with a valid ECDSA signature over them."""
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, info + _ECDSA_WITH_SHA256 + tlv(0x03, b"\x00" + signature))


def build(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str = "oven",
    *,
    attributes: x509.Name = NO_ATTRIBUTES,
    extensions: Iterable[x509.ExtensionType] = (),
) -> bytes:
    """A well-formed CSR (DER) asking for whatever ``extensions`` say; ``attributes`` follow the CN."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), *attributes])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return request_der(builder.sign(key, hashes.SHA256()))


def _edited(
    key: ec.EllipticCurvePrivateKey, edit_name: str, value: univ.Any | univ.ObjectIdentifier | int
) -> bytes:
    """A fresh CSR for ``oven`` with one field of its request info replaced, then re-signed."""
    info, _ = decoder.decode(
        request_info(x509.load_der_x509_csr(build(key))), asn1Spec=rfc2986.CertificationRequestInfo()
    )
    if edit_name == "common_name":
        info["subject"][0][0][0]["value"] = value
    elif edit_name == "curve":
        info["subjectPKInfo"]["algorithm"]["parameters"] = univ.Any(encoder.encode(value))
    elif edit_name == "version":
        info["version"] = value
    else:
        raise ValueError(edit_name)
    return sign_info(encoder.encode(info), key)


def with_text_attributes(
    key: ec.EllipticCurvePrivateKey, common_name: str, attributes: Iterable[tuple[x509.ObjectIdentifier, str]]
) -> bytes:
    """A signed CSR whose subject is ``common_name`` then ``attributes``, every value a UTF8String.

    cryptography writes serialNumber as a PrintableString, which holds letters, digits and a few
    marks; from version 50 it refuses anything else. An appliance's own encoder may write any text
    in a UTF8String there, and the hub must show it safely.
    """
    attributes = list(attributes)
    placeholder = x509.Name([x509.NameAttribute(oid, "x") for oid, _ in attributes])
    csr = x509.load_der_x509_csr(build(key, common_name, attributes=placeholder))
    info, _ = decoder.decode(request_info(csr), asn1Spec=rfc2986.CertificationRequestInfo())
    for index, (_, text) in enumerate(attributes, start=1):
        info["subject"][0][index][0]["value"] = univ.Any(encoder.encode(char.UTF8String(text)))
    return sign_info(encoder.encode(info), key)


def with_common_name_der(key: ec.EllipticCurvePrivateKey, value: bytes) -> bytes:
    """A signed CSR whose common name is the raw DER ``value`` (a bad UTF8String, an odd BMPString...)."""
    return _edited(key, "common_name", univ.Any(value))


def with_signature_algorithm(oid: str) -> bytes:
    """A CSR for ``oven`` signed with ECDSA over SHA-256, but claiming the signature algorithm ``oid``."""
    info = request_info(x509.load_der_x509_csr(build(new_key())))
    signature = new_key().sign(info, ec.ECDSA(hashes.SHA256()))
    algorithm = tlv(0x30, encoder.encode(univ.ObjectIdentifier(oid)))
    return tlv(0x30, info + algorithm + tlv(0x03, b"\x00" + signature))


def with_curve(key: ec.EllipticCurvePrivateKey, oid: str) -> bytes:
    """A signed CSR whose EC key claims to be on the curve ``oid`` (one no library knows, say)."""
    return _edited(key, "curve", univ.ObjectIdentifier(oid))


def dsa_signed(modulus_bits: int, common_name: str = "oven") -> bytes:
    """A CSR with a DSA key whose modulus has ``modulus_bits`` bits, DSA-signed with SHA-256.

    Made up, as an attacker would: p, g and y random, r and s in range, none of it checked before
    the signature's arithmetic, which costs what the modulus's size makes it cost.
    """
    info, _ = decoder.decode(
        request_info(x509.load_der_x509_csr(build(new_key(), common_name))),
        asn1Spec=rfc2986.CertificationRequestInfo(),
    )
    random = secrets.SystemRandom()
    q = random.getrandbits(256) | 1 << 255 | 1
    parameters = rfc3279.Dss_Parms()
    parameters["p"] = random.getrandbits(modulus_bits) | 1 << (modulus_bits - 1) | 1
    parameters["q"] = q
    parameters["g"] = random.getrandbits(modulus_bits - 8) | 1
    key_info = info["subjectPKInfo"]
    key_info["algorithm"]["algorithm"] = rfc3279.id_dsa
    key_info["algorithm"]["parameters"] = univ.Any(encoder.encode(parameters))
    y = univ.Integer(random.getrandbits(modulus_bits - 8) | 1)
    key_info["subjectPublicKey"] = univ.BitString.fromOctetString(encoder.encode(y))
    signature = rfc3279.Dss_Sig_Value()
    signature["r"], signature["s"] = q - 5, q - 7
    return tlv(0x30, encoder.encode(info) + _DSA_WITH_SHA256 + tlv(0x03, b"\x00" + encoder.encode(signature)))


def openssl_signed(key: CertificateIssuerPrivateKeyTypes, digest: str, *options: str) -> bytes:
    """A CSR for ``oven`` (DER) made by ``openssl req`` with ``-<digest>`` and ``options``.

    ``cryptography`` refuses to sign with SHA-1 or MD5; OpenSSL still does, as old appliances may.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    command = ["openssl", "req", "-new", "-key", "/dev/stdin", "-subj", "/CN=oven", f"-{digest}"]
    made = subprocess.run([*command, *options, "-outform", "DER"], input=pem, capture_output=True, check=True)
    return made.stdout


def with_version(key: ec.EllipticCurvePrivateKey, version: int) -> bytes:
    """A signed CSR with a version other than v1 (0)."""
    return _edited(key, "version", version)


def with_bad_signature(der: bytes) -> bytes:
    """The same CSR with one bit of its signature flipped."""
    return der[:-1] + bytes([der[-1] ^ 0x01])


def issued_by(
    ca: HouseholdCA,
    public_key: CertificatePublicKeyTypes,
    *,
    common_name: str = "oven",
    dns_names: tuple[str, ...] = (),
    server_auth: bool = False,
    not_before: datetime,
    lifetime: timedelta = timedelta(days=365),
    crl_url: str | None = None,
    key_fingerprint: str | None = None,
    serial_number: int | None = None,
) -> x509.Certificate:
    """An appliance certificate from the household CA, as the registrar has it issued."""
    return ca.issue_appliance_certificate(
        public_key=public_key,
        name=IssuedName(common_name, dns_names),
        server_auth=server_auth,
        serial_number=serial_number or x509.random_serial_number(),
        not_before=not_before,
        not_after=not_before + lifetime,
        crl_url=crl_url,
        key_fingerprint=key_fingerprint,
    )


def certificate(
    issuer: x509.Certificate | None,
    issuer_key: CertificateIssuerPrivateKeyTypes,
    public_key: ec.EllipticCurvePublicKey,
    *,
    common_name: str = "oven",
    serial_number: int | None = None,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A client certificate signed by ``issuer_key`` (self-signed when ``issuer`` is None)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def expired_twin(
    current: x509.Certificate, ca: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes, now: datetime
) -> x509.Certificate:
    """``current`` as it will be once expired: same serial, subject and key, signed by the same CA."""
    public_key = current.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return certificate(
        ca,
        ca_key,
        public_key,
        common_name=str(current.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
        serial_number=current.serial_number,
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )


def with_subject_common_name_der(
    certificate: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, value: bytes
) -> bytes:
    """``certificate`` (DER) with its subject's first attribute value replaced by the raw DER
    ``value`` (a PrintableString holding byte 0x80, say: OpenSSL verifies such a certificate,
    cryptography refuses its subject, at load or when it is read, depending on its version),
    signed again with ``issuer_key`` (ECDSA with SHA-256)."""
    decoded, _ = decoder.decode(
        certificate.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate()
    )
    tbs = decoded["tbsCertificate"]
    tbs["subject"][0][0][0]["value"] = univ.Any(value)
    tbs_der = encoder.encode(tbs)
    decoded["signature"] = univ.BitString.fromOctetString(issuer_key.sign(tbs_der, ec.ECDSA(hashes.SHA256())))
    return bytes(encoder.encode(decoded))


def with_long_form_serial_length(
    certificate: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey
) -> bytes:
    """``certificate`` (DER) with its serial number's length in a needless long form, signed again.

    BER allows it and OpenSSL verifies the certificate; cryptography, strict DER, cannot load it.
    """
    tbs = certificate.tbs_certificate_bytes
    header = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    version = bytes.fromhex("a003020102")  # [0] INTEGER 2 (v3)
    body = tbs[header:]
    if not body.startswith(version) or body[len(version)] != 0x02 or body[len(version) + 1] >= 0x80:
        raise ValueError("expected a v3 certificate with a short serial number")
    serial_at = len(version)
    stretched = body[:serial_at] + bytes([0x02, 0x81]) + body[serial_at + 1 :]
    new_tbs = tlv(0x30, stretched)
    signature = issuer_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, new_tbs + _ECDSA_WITH_SHA256 + tlv(0x03, b"\x00" + signature))
