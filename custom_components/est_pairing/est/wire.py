"""EST encodings (RFC 7030, RFC 8951): base64/PEM/DER, certs-only PKCS#7, CSR attributes, multipart.

Liberal in what it accepts, conservative in what it sends. All content types live here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from email.parser import BytesParser
from email.policy import HTTP
import secrets
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import SignatureAlgorithmOID
from pyasn1.codec.der import decoder as der_decoder, encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc7030

from .credentials import BasicCredentials
from .csr import CsrAttribute, check_key
from .errors import AuthenticationRequired, MalformedRequest, ProtocolError
from .limits import MIN_SIGNATURE_HASH_BITS

EST_PATH = "/.well-known/est"
CRL_PATH = "/crl"  # not part of RFC 7030: where the household CA publishes its CRL

# --- media types -----------------------------------------------------------------------------------
PKCS10 = "application/pkcs10"
PKCS7_MIME = "application/pkcs7-mime"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CSRATTRS = "application/csrattrs"
PKCS8 = "application/pkcs8"
PKIX_CRL = "application/pkix-crl"
MULTIPART_MIXED = "multipart/mixed"
TEXT_PLAIN = "text/plain"
TRANSFER_ENCODING = "Content-Transfer-Encoding"

BASE64_LINE = 64
_DER_SEQUENCE = 0x30  # every DER structure EST carries is a SEQUENCE (tag 0x30)


def media_type(header: str | None) -> str:
    """Return the bare media type of a Content-Type header, lower-cased, parameters dropped."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


def encode_base64(der: bytes) -> bytes:
    """Base64 wrapped at 64 columns with CRLF line ends, as the strictest EST clients want."""
    text = base64.b64encode(der)
    lines = [text[i : i + BASE64_LINE] for i in range(0, len(text), BASE64_LINE)]
    return b"\r\n".join(lines) + b"\r\n"


def decode_base64(data: bytes, *, what: str) -> bytes:
    """Decode base64 with whitespace and line breaks anywhere, with or without its ``=`` padding.

    Reject anything else: a length of 1 mod 4 cannot be base64, padded or not.
    """
    compact = b"".join(data.split())
    if not compact:
        raise MalformedRequest(f"{what} is empty")
    if len(compact) % 4 == 1:
        raise MalformedRequest(f"{what} is not valid base64 (truncated)")
    try:
        decoded = base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest(f"{what} is not valid base64") from None
    if not decoded:
        raise MalformedRequest(f"{what} is empty")
    return decoded


def decode_body(body: bytes, *, what: str = "request body") -> bytes:
    """Return the DER inside an EST body: base64 (any line breaks), PEM armour, or raw DER."""
    if body[:1] == bytes([_DER_SEQUENCE]):
        return body
    text = body.strip()
    if text.startswith(b"-----BEGIN "):
        text = _pem_payload(text, what=what)
    return decode_base64(text, what=what)


def _pem_payload(text: bytes, *, what: str) -> bytes:
    first, _, rest = text.partition(b"\n")
    label = first.strip()[len(b"-----BEGIN ") :].rstrip(b"-").strip()
    end = b"-----END " + label + b"-----"
    payload, found, _ = rest.partition(end)
    if not found:
        raise MalformedRequest(f"{what} has PEM armour without its END line")
    return payload


# Signature algorithms whose check costs the same whatever the request's key (no RSA or DSA arithmetic).
_COST_NOT_SET_BY_KEY: Final = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
        SignatureAlgorithmOID.ED25519,
    }
)


def load_csr(body: bytes) -> x509.CertificateSigningRequest:
    """Parse a PKCS#10 request body and check its self-signature (proof of possession, §4.2)."""
    der = decode_body(body, what="certificate request")
    try:
        csr = x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion):
        raise MalformedRequest("body is not a DER PKCS#10 certificate request") from None
    _refuse_signature_algorithm(csr)
    _refuse_costly_check(csr)
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):  # e.g. an unknown curve
        raise MalformedRequest("certificate request uses an unsupported key or signature algorithm") from None
    if not valid:
        raise MalformedRequest("certificate request signature does not verify")
    return csr


_SIGN_WITH = "sign it with ECDSA, RSA or Ed25519, and SHA-256 or stronger"


def _refuse_signature_algorithm(csr: x509.CertificateSigningRequest) -> None:
    """Refuse, naming it, a signature algorithm nobody knows or a hash under MIN_SIGNATURE_HASH_BITS.

    Before the signature is checked, which would only say it does not verify: it may well verify,
    the algorithm is what is refused.
    """
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:  # its OID, or the hash in its parameters (RSASSA-PSS); parsed at load
        oid = csr.signature_algorithm_oid.dotted_string
        raise MalformedRequest(
            f"certificate request is signed with an unsupported algorithm ({oid}); {_SIGN_WITH}"
        ) from None
    if algorithm is None or algorithm.digest_size * 8 >= MIN_SIGNATURE_HASH_BITS:
        return
    name = algorithm.name.upper()  # MD5, SHA1, SHA224, SHA3-224
    if name.startswith("SHA") and name[3:].isdigit():
        name = f"SHA-{name[3:]}"
    raise MalformedRequest(f"certificate request is signed with {name}, which is not accepted; {_SIGN_WITH}")


def _refuse_costly_check(csr: x509.CertificateSigningRequest) -> None:
    """Refuse, before checking its signature, a key that would make the check slow, or is refused anyway.

    Only an RSA or DSA signature makes the check run arithmetic whose cost the key sets (an RSA
    exponent, a DSA modulus): an ECDSA or EdDSA signature with such a key is refused on the mismatch
    before any arithmetic. Those requests, which are nearly all, are spared parsing their key here
    (the request inspection parses it).
    """
    if csr.signature_algorithm_oid in _COST_NOT_SET_BY_KEY:
        return
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        return  # the signature check reports what is wrong with it
    check_key(public_key)


# --- certs-only PKCS#7 (§4.1.3) ----------------------------------------------------------------------


def certs_only_der(certificates: Sequence[x509.Certificate]) -> bytes:
    """A degenerate certs-only CMS SignedData holding the certificates, DER."""
    return pkcs7.serialize_certificates(list(certificates), Encoding.DER)


def encode_certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """:func:`certs_only_der` as base64 body bytes."""
    return encode_base64(certs_only_der(certificates))


def decode_certs_only(body: bytes) -> list[x509.Certificate]:
    """Certificates from a certs-only PKCS#7 body (base64, PEM or DER)."""
    try:
        der = decode_body(body, what="PKCS#7 response")
        certificates = pkcs7.load_der_pkcs7_certificates(der)
    except (MalformedRequest, ValueError) as err:
        raise ProtocolError(f"response is not a certs-only PKCS#7: {err}") from None
    if not certificates:
        raise ProtocolError("certs-only PKCS#7 response holds no certificate")
    return certificates


# --- CSR attributes (§4.5, RFC 8951 §4) ---------------------------------------------------------------


def encode_csrattrs(attributes: Sequence[CsrAttribute]) -> bytes:
    """DER of ``CsrAttrs``."""
    sequence = rfc7030.CsrAttrs()
    sequence.clear()  # a value, even when empty (``MAA=``)
    for index, attribute in enumerate(attributes):
        choice = rfc7030.AttrOrOID()
        if attribute.values:
            choice["attribute"]["attrType"] = univ.ObjectIdentifier(attribute.oid.dotted_string)
            for value_index, value in enumerate(attribute.values):
                choice["attribute"]["attrValues"][value_index] = univ.Any(value)
        else:
            choice["oid"] = univ.ObjectIdentifier(attribute.oid.dotted_string)
        sequence[index] = choice
    encoded: bytes = der_encoder.encode(sequence)
    return encoded


def decode_csrattrs(der: bytes) -> list[CsrAttribute]:
    """Parse DER ``CsrAttrs``; truncated or trailing data is an error."""
    try:
        sequence, rest = der_decoder.decode(der, asn1Spec=rfc7030.CsrAttrs())
    except PyAsn1Error as err:
        raise ProtocolError(f"CSR attributes are not valid DER: {err}") from None
    if rest:
        raise ProtocolError("CSR attributes have trailing data")
    attributes = []
    for choice in sequence:
        if choice.getName() == "oid":
            attributes.append(CsrAttribute(x509.ObjectIdentifier(str(choice["oid"]))))
        else:
            attribute = choice["attribute"]
            values = tuple(bytes(der_encoder.encode(value)) for value in attribute["attrValues"])
            attributes.append(CsrAttribute(x509.ObjectIdentifier(str(attribute["attrType"])), values))
    return attributes


def encode_oid(oid: x509.ObjectIdentifier) -> bytes:
    """DER of an OBJECT IDENTIFIER (a CSR attribute value such as a curve name)."""
    encoded: bytes = der_encoder.encode(univ.ObjectIdentifier(oid.dotted_string))
    return encoded


# --- multipart/mixed for server-side key generation (§4.4.2) ----------------------------------------


def encode_multipart(parts: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/mixed body of (media type, DER) parts, each base64 with its own headers.

    Returns the body and the Content-Type header value (with its boundary).
    """
    boundary = f"est-{secrets.token_hex(16)}"
    chunks: list[bytes] = []
    for content_type, der in parts:
        chunks += [
            f"--{boundary}\r\n".encode(),
            f"Content-Type: {content_type}\r\n".encode(),
            f"{TRANSFER_ENCODING}: base64\r\n\r\n".encode(),
            encode_base64(der),
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"{MULTIPART_MIXED}; boundary={boundary}"


def decode_multipart(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """Parts of a multipart/mixed body as (media type, decoded DER); the client side of §4.4.2."""
    if media_type(content_type) != MULTIPART_MIXED:
        raise ProtocolError(f"expected {MULTIPART_MIXED}, got {content_type!r}")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts: list[tuple[str, bytes]] = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=False)
        if not isinstance(payload, str):
            raise ProtocolError("multipart response has a nested part")
        try:
            der = decode_body(payload.encode("ascii"), what="multipart part")
        except (MalformedRequest, UnicodeEncodeError):
            raise ProtocolError("multipart part is not base64") from None
        parts.append((part.get_content_type(), der))
    return parts


# --- HTTP Basic credentials (RFC 7617) --------------------------------------------------------------


def parse_basic_authorization(header: str | None) -> BasicCredentials | None:
    """Credentials from an ``Authorization: Basic`` header; None when absent.

    Credentials that cannot be read are refused like wrong ones (401 and a challenge, RFC 9110
    §11.6.1), so that a client asks its user again rather than giving up on a 400.
    """
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise AuthenticationRequired("only HTTP Basic authentication is supported")
    if not token.strip():
        raise AuthenticationRequired("Basic credentials are missing after 'Basic'")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationRequired("Basic credentials are not valid base64") from None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationRequired("Basic credentials are not UTF-8") from None
    username, colon, password = text.partition(":")
    if not colon:
        raise AuthenticationRequired("Basic credentials have no ':' between user and password")
    return BasicCredentials(username, password)


def basic_authorization(username: str, password: str) -> str:
    """The Authorization header value for HTTP Basic (client side)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
