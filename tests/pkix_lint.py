"""pkilint's RFC 5280 linters (``lint_pkix_cert``, ``lint_crl``, ``lint_pkix_signer_signee_cert_chain``).

Run in-process through their command-line entry points, so the checks are exactly the tools'.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import io
import json
from pathlib import Path
import tempfile
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkilint.bin import lint_crl, lint_pkix_cert, lint_pkix_signer_signee_cert_chain

# pkilint 0.13 recognises RFC 7093 methods 1-3 for a subjectKeyIdentifier, not method 4 (the SHA-256
# of the whole SubjectPublicKeyInfo), which appliance and listener certificates use: it is the key
# fingerprint the owner compares. docs/reliability.md names it.
ACCEPTED_NOTICES = frozenset({"pkix.unknown_subject_key_identifier_calculation_method"})
# pkilint checks a name constraint's DNS base name as a host name of two labels or more (the
# `validators` package's domain syntax), but RFC 5280 §4.2.1.10 constrains to any domain, ``local``
# included: the household CA's permitted subtree ``local`` is reported as an ERROR it is not.
LOCAL_CONSTRAINT = ("pkix.invalid_domain_name_syntax", 'Invalid domain name syntax: "local"')

type Document = x509.Certificate | x509.CertificateRevocationList


class Finding(NamedTuple):
    """One finding, as pkilint reports it."""

    code: str
    severity: str
    message: str | None
    path: str


def findings(*documents: Document) -> list[Finding]:
    """pkilint's findings of NOTICE or worse for one certificate or CRL, or an issuer and a subject."""
    with tempfile.TemporaryDirectory(prefix="pkilint-") as directory:
        paths = []
        for number, document in enumerate(documents):
            path = Path(directory, f"{number}.der")
            path.write_bytes(document.public_bytes(serialization.Encoding.DER))
            paths.append(str(path))
        main: Callable[[list[str]], int]
        options = ["-f", "JSON", "-s", "NOTICE"]
        if isinstance(documents[0], x509.CertificateRevocationList):
            main, options = lint_crl.main, [*options, "-t", "CRL", "-p", "PKIX"]
        elif len(documents) == 2:
            main = lint_pkix_signer_signee_cert_chain.main
        else:
            main = lint_pkix_cert.main
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            main(["lint", *options, *paths])
    report = json.loads(output.getvalue())
    return [
        Finding(finding["code"], finding["severity"], finding["message"], result["node_path"])
        for result in report["results"]
        for finding in result["finding_descriptions"]
    ]


def problems(*documents: Document) -> list[Finding]:
    """The findings that must not be: any FATAL, ERROR or WARNING, and a NOTICE not accepted.

    Only the household CA's ``local`` name constraint is excused (see LOCAL_CONSTRAINT).
    """
    return [
        finding
        for finding in findings(*documents)
        if not (finding.severity == "NOTICE" and finding.code in ACCEPTED_NOTICES)
        and not (
            (finding.code, finding.message) == LOCAL_CONSTRAINT
            and finding.path.endswith(".nameConstraints.permittedSubtrees.0.base.dNSName")
        )
    ]
