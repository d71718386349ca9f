"""Wire encodings: golden vectors from RFC 8951 / RFC 7030 and tables of malformed input."""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID
import pytest

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.credentials import BasicCredentials
from custom_components.est_pairing.est.errors import (
    AuthenticationRequired,
    MalformedRequest,
    ProtocolError,
)

from . import forge

# RFC 8951 §4: challengePassword; Attribute{id-ecPublicKey,{secp384r1}};
# Attribute{extensionRequest,{macAddress}}; ecdsa-with-SHA384. 67 bytes of DER.
RFC8951_CSRATTRS = (
    "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="
)
# RFC 7030 Appendix A.2: macAddress; Attribute{2.999.1,{"Parse SET as 2.999.1 data"}};
# challengePassword; Attribute{2.999.2,{2.999.3, 2.999.4, "Parse SET as 2.999.2 data"}};
# brainpoolP384r1; sha384.
RFC7030_CSRATTRS = (
    "MHwGBysGAQEBARYwIgYDiDcBMRsTGVBhcnNlIFNFVCBhcyAyLjk5OS4xIGRhdGEGCSqGSIb3DQEJBzAsBgOINwIxJQYDiDcDBgOINwQT"
    "GVBhcnNlIFNFVCBhcyAyLjk5OS4yIGRhdGEGCSskAwMCCAEBCwYJYIZIAWUDBAIC"
)


def make_csr(common_name: str = "oven") -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def test_rfc8951_golden_csrattrs_decode_and_reencode_byte_for_byte() -> None:
    der = base64.b64decode(RFC8951_CSRATTRS)
    assert len(der) == 67
    attributes = wire.decode_csrattrs(der)
    assert [a.oid.dotted_string for a in attributes] == [
        "1.2.840.113549.1.9.7",
        "1.2.840.10045.2.1",
        "1.2.840.113549.1.9.14",
        "1.2.840.10045.4.3.3",
    ]
    assert attributes[0].values == ()
    assert attributes[1].values == (wire.encode_oid(x509.ObjectIdentifier("1.3.132.0.34")),)
    assert wire.encode_csrattrs(attributes) == der


def test_rfc7030_appendix_a2_csrattrs() -> None:
    der = base64.b64decode(RFC7030_CSRATTRS)
    attributes = wire.decode_csrattrs(der)
    assert [a.oid.dotted_string for a in attributes] == [
        "1.3.6.1.1.1.1.22",
        "2.999.1",
        "1.2.840.113549.1.9.7",
        "2.999.2",
        "1.3.36.3.3.2.8.1.1.11",
        "2.16.840.1.101.3.4.2.2",
    ]
    assert len(attributes[3].values) == 3
    assert wire.encode_csrattrs(attributes) == der


def test_empty_csrattrs_is_valid_and_truncated_is_not() -> None:
    assert wire.decode_csrattrs(base64.b64decode("MAA=")) == []
    assert wire.encode_csrattrs([]) == base64.b64decode("MAA=")
    with pytest.raises(ProtocolError):
        wire.decode_csrattrs(base64.b64decode("MA=="))


def test_csrattrs_trailing_data_is_rejected() -> None:
    with pytest.raises(ProtocolError, match="trailing"):
        wire.decode_csrattrs(base64.b64decode("MAA=") + b"\x00")


def test_base64_is_wrapped_at_64_columns_with_crlf() -> None:
    der = bytes(range(256)) * 3
    encoded = wire.encode_base64(der)
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) == 64 for line in lines[:-2])
    assert 0 < len(lines[-2]) <= 64
    assert base64.b64decode(b"".join(lines)) == der


def _body_forms(der: bytes) -> dict[str, bytes]:
    text = base64.b64encode(der)
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der)
    return {
        "raw DER": der,
        "base64, one line": text,
        "base64, 64 columns": wire.encode_base64(der),
        "base64, 76 columns LF": base64.encodebytes(der),
        "base64, spaces and tabs": b" \t".join(text[i : i + 10] for i in range(0, len(text), 10)),
        "base64, leading and trailing blank lines": b"\r\n\r\n" + text + b"\r\n\r\n",
        "base64, padding left off": text.rstrip(b"="),
        "base64, padding left off, 64 columns": wire.encode_base64(der).rstrip(b"=\r\n"),
        "PEM armour": pem + b"-----END CERTIFICATE REQUEST-----\n",
        "PEM armour, NEW label": pem.replace(b"CERTIFICATE", b"NEW CERTIFICATE")
        + b"-----END NEW CERTIFICATE REQUEST-----\n",
    }


@pytest.mark.parametrize("length", [30, 31, 32])  # base64 ending in "", "==" and "="
def test_base64_without_padding_decodes_as_with_it(length: int) -> None:
    der = bytes(range(length))
    text = base64.b64encode(der)
    assert text.endswith(b"=") == (length % 3 != 0)
    assert wire.decode_base64(text.rstrip(b"="), what="body") == der
    assert wire.decode_base64(text, what="body") == der


@pytest.mark.parametrize("form", list(_body_forms(b"0")))
def test_every_accepted_request_form_gives_the_same_csr(form: str) -> None:
    csr = make_csr()
    der = csr.public_bytes(serialization.Encoding.DER)
    assert wire.load_csr(_body_forms(der)[form]) == csr


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"not base64 at all!", "not valid base64"),
        (b"TUlJQkNqQ0Nh===", "not valid base64"),
        (b"\xff\xfe\x00garbage", "not valid base64"),
        (base64.b64encode(b"\x30\x03\x02\x01"), "not a DER PKCS#10"),
        (b"\x30\x82\xff\xff truncated", "not a DER PKCS#10"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n", "without its END line"),
        (b"====", "not valid base64"),
        (b"MIIBC", "not valid base64"),  # 1 mod 4: no padding makes it base64
        (b"MIIB\r\nC", "not valid base64"),
        (b"MIIB=Cg", "not valid base64"),  # padding in the middle: re-padding the end cannot mend it
    ],
)
def test_malformed_request_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        wire.load_csr(body)


def test_a_certificate_is_not_a_csr(certificate: x509.Certificate) -> None:
    with pytest.raises(MalformedRequest, match="not a DER PKCS#10"):
        wire.load_csr(wire.encode_base64(certificate.public_bytes(serialization.Encoding.DER)))


def test_csr_with_a_bad_signature_is_refused() -> None:
    der = bytearray(make_csr().public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    with pytest.raises(MalformedRequest, match="signature"):
        wire.load_csr(bytes(der))


def test_a_costly_rsa_exponent_is_refused_before_the_signature_is_checked() -> None:
    key = forge.rsa_key_with_exponent(2047)
    der = bytearray(forge.build(key))
    with pytest.raises(MalformedRequest, match="exponent is over 2\\^32"):
        wire.load_csr(bytes(der))
    der[-5] ^= 0x01  # a broken signature: had it been checked first, that would be the reason
    with pytest.raises(MalformedRequest, match="exponent is over"):
        wire.load_csr(bytes(der))
    usual = forge.rsa_key_with_exponent(17)  # 65537 and anything up to 2^32 is fine
    assert wire.load_csr(forge.build(usual)).is_signature_valid


def test_an_rsa_key_under_an_ecdsa_signature_is_refused_without_rsa_arithmetic() -> None:
    """The pre-check skips requests signed with ECDSA: the mismatch is refused before any arithmetic."""
    costly = x509.load_der_x509_csr(forge.build(forge.rsa_key_with_exponent(2047)))
    mixed = forge.sign_info(forge.request_info(costly), forge.new_key())  # RSA key, ECDSA signature
    assert isinstance(x509.load_der_x509_csr(mixed).public_key(), rsa.RSAPublicKey)
    with pytest.raises(MalformedRequest, match="signature does not verify"):
        wire.load_csr(mixed)


def test_an_rsa_signature_over_a_key_that_is_not_rsa_is_refused() -> None:
    """The pre-check parses the key of RSA-signed requests; what it cannot parse, or what is not
    RSA, is left to the signature check, which refuses it."""
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unknown_curve = x509.load_der_x509_csr(forge.with_curve(forge.new_key(), "1.2.3.4.5"))
    with pytest.raises(MalformedRequest, match="unsupported key or signature algorithm"):
        wire.load_csr(forge.sign_info_rsa(forge.request_info(unknown_curve), signer))
    ec_request = x509.load_der_x509_csr(forge.build(forge.new_key()))
    with pytest.raises(MalformedRequest, match="signature does not verify"):
        wire.load_csr(forge.sign_info_rsa(forge.request_info(ec_request), signer))


def _key(kind: str) -> CertificateIssuerPrivateKeyTypes:
    return forge.new_key() if kind == "ec" else rsa.generate_private_key(public_exponent=65537, key_size=2048)


_PSS = ("-sigopt", "rsa_padding_mode:pss")


@pytest.mark.parametrize(
    ("kind", "digest", "options", "named"),
    [
        ("ec", "sha1", (), "SHA-1"),  # ecdsa-with-SHA1
        ("rsa", "sha1", (), "SHA-1"),  # sha1WithRSAEncryption
        ("rsa", "sha1", _PSS, "SHA-1"),  # RSASSA-PSS over SHA-1
        ("rsa", "md5", (), "MD5"),  # md5WithRSAEncryption
        ("ec", "sha224", (), "SHA-224"),
    ],
)
def test_a_request_signed_with_a_weak_hash_is_refused_naming_it(
    kind: str, digest: str, options: tuple[str, ...], named: str
) -> None:
    """Its signature may well verify: the algorithm is what is refused, before any arithmetic."""
    der = forge.openssl_signed(_key(kind), digest, *options)
    reason = f"signed with {named}, which is not accepted; sign it with .* SHA-256 or stronger"
    with pytest.raises(MalformedRequest, match=reason):
        wire.load_csr(der)
    broken = bytearray(der)
    broken[-5] ^= 0x01  # had the signature been checked first, "does not verify" would be the reason
    with pytest.raises(MalformedRequest, match=reason):
        wire.load_csr(bytes(broken))


def test_a_signature_algorithm_nobody_knows_is_refused_as_unsupported() -> None:
    with pytest.raises(MalformedRequest, match=r"signed with an unsupported algorithm \(1\.2\.3\.4\)"):
        wire.load_csr(forge.with_signature_algorithm("1.2.3.4"))


@pytest.mark.parametrize(
    ("kind", "digest", "options"),
    [
        ("ec", "sha256", ()),
        ("ec", "sha384", ()),
        ("ec", "sha512", ()),
        ("ec", "sha3-256", ()),
        ("rsa", "sha256", ()),
        ("rsa", "sha512", _PSS),
    ],
)
def test_a_request_signed_with_sha256_or_stronger_is_accepted(
    kind: str, digest: str, options: tuple[str, ...]
) -> None:
    assert wire.load_csr(forge.openssl_signed(_key(kind), digest, *options)).is_signature_valid


def test_certs_only_round_trip(certificate: x509.Certificate) -> None:
    body = wire.encode_certs_only([certificate])
    assert wire.decode_certs_only(body) == [certificate]
    assert all(len(line) <= 64 for line in body.split(b"\r\n"))


@pytest.mark.parametrize("body", [b"", b"bm90IHBrY3M3", b"\x30\x00"])
def test_undecodable_pkcs7_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.decode_certs_only(body)


def test_multipart_round_trip_with_part_headers() -> None:
    body, content_type = wire.encode_multipart(
        [(wire.PKCS8, b"\x30\x01\x00"), (wire.CERTS_ONLY, b"\x30\x02\x01\x02")]
    )
    assert content_type.startswith("multipart/mixed; boundary=")
    assert body.count(b"Content-Transfer-Encoding: base64") == 2
    assert b"Content-Type: application/pkcs8\r\n" in body
    assert wire.decode_multipart(body, content_type) == [
        ("application/pkcs8", b"\x30\x01\x00"),
        ("application/pkcs7-mime", b"\x30\x02\x01\x02"),
    ]


@pytest.mark.parametrize(
    ("part", "reason"),
    [
        (b"Content-Type: application/pkcs8\r\n\r\n!!! not base64 !!!\r\n", "not base64"),
        (
            b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n"
            b"--inner\r\nContent-Type: text/plain\r\n\r\nx\r\n--inner--\r\n",
            "nested part",
        ),
    ],
)
def test_multipart_parts_must_be_flat_base64(part: bytes, reason: str) -> None:
    body = b"--outer\r\n" + part + b"--outer--\r\n"
    with pytest.raises(ProtocolError, match=reason):
        wire.decode_multipart(body, "multipart/mixed; boundary=outer")


def test_multipart_needs_its_media_type() -> None:
    with pytest.raises(ProtocolError, match="multipart/mixed"):
        wire.decode_multipart(b"", "application/pkcs7-mime")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/pkcs10", "application/pkcs10"),
        ("Application/PKCS10; charset=utf-8", "application/pkcs10"),
        ("  application/pkcs10 ;name=x", "application/pkcs10"),
        ("", ""),
        (None, ""),
    ],
)
def test_media_type(header: str | None, expected: str) -> None:
    assert wire.media_type(header) == expected


def test_basic_credentials_round_trip_and_repr_hides_the_password() -> None:
    header = wire.basic_authorization("oven", "123456:with colon")
    credentials = wire.parse_basic_authorization(header)
    assert credentials == BasicCredentials("oven", "123456:with colon")
    assert "123456" not in repr(credentials)
    assert wire.parse_basic_authorization(None) is None


@pytest.mark.parametrize(
    ("header", "error", "reason"),
    [
        ("Bearer abc", AuthenticationRequired, "only HTTP Basic"),
        ("Basic", AuthenticationRequired, "missing after 'Basic'"),
        ("Basic   ", AuthenticationRequired, "missing after 'Basic'"),
        ("Basic %%%", AuthenticationRequired, "not valid base64"),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), AuthenticationRequired, "not UTF-8"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), AuthenticationRequired, "no ':'"),
    ],
)
def test_bad_authorization_headers(header: str, error: type[Exception], reason: str) -> None:
    with pytest.raises(error, match=reason):
        wire.parse_basic_authorization(header)
