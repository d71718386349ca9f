"""``curl`` and ``openssl`` as an independent EST client; results checked with ``openssl verify``."""

from __future__ import annotations

import asyncio
import base64
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
import shutil

import pytest

from .conftest import RunningServer

pytestmark = pytest.mark.slow  # curl and openssl processes against the real listener

EST = "/.well-known/est"


async def run(*command: str | Path, stdin: bytes | None = None) -> bytes:
    """Run a command; fail the test (with its stderr) if it fails."""
    tool = shutil.which(str(command[0]))
    assert tool, f"{command[0]} is not installed (CI installs it)"
    process = await asyncio.create_subprocess_exec(
        tool,
        *map(str, command[1:]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate(stdin)
    assert process.returncode == 0, f"{command}: {stderr.decode(errors='replace')}"
    return stdout


@pytest.fixture
async def pki(server: RunningServer, tmp_path: Path) -> Path:
    """ca.pem fetched with curl over the provisional (-k) session, checked against the server's CA."""
    body = await run("curl", "--silent", "--show-error", "--fail", "-k", f"{server.url}{EST}/cacerts")
    der = base64.b64decode(body)
    pem = await run("openssl", "pkcs7", "-inform", "DER", "-print_certs", stdin=der)
    (tmp_path / "ca.pem").write_bytes(pem)
    fingerprint = await run(
        "openssl", "x509", "-in", tmp_path / "ca.pem", "-noout", "-fingerprint", "-sha256"
    )
    assert (
        fingerprint.decode().split("=")[1].strip().replace(":", "").lower() == server.service.ca.fingerprint
    )
    return tmp_path


async def make_request(directory: Path, name: str, common_name: str) -> Path:
    """An EC P-256 key and a base64 DER CSR made by openssl."""
    key = directory / f"{name}.key"
    await run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    der = await run("openssl", "req", "-new", "-key", key, "-subj", f"/CN={common_name}", "-outform", "DER")
    csr = directory / f"{name}.b64"
    csr.write_bytes(base64.encodebytes(der))
    return csr


async def curl_post(
    server: RunningServer, pki: Path, operation: str, csr: Path, *extra: str | Path, fail: bool = True
) -> tuple[bytes, bytes]:
    """POST a CSR with curl verifying the server against ca.pem; returns (headers, body)."""
    headers_file = pki / "headers.txt"
    body = await run(
        "curl",
        "--silent",
        "--show-error",
        *(["--fail"] if fail else []),
        "--cacert",
        pki / "ca.pem",
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        f"@{csr}",
        "--dump-header",
        headers_file,
        *extra,
        f"{server.url}{EST}/{operation}",
    )
    return headers_file.read_bytes(), body


async def certificate_from_pkcs7(pki: Path, body: bytes, name: str) -> Path:
    pem = await run("openssl", "pkcs7", "-inform", "DER", "-print_certs", stdin=base64.b64decode(body))
    path = pki / f"{name}.pem"
    path.write_bytes(pem)
    return path


async def test_enroll_reenroll_with_curl_and_verify_with_openssl(server: RunningServer, pki: Path) -> None:
    csr = await make_request(pki, "oven", "oven")
    headers, body = await curl_post(server, pki, "simpleenroll", csr, "--user", "oven:123456")
    assert b"content-type: application/pkcs7-mime; smime-type=certs-only" in headers.lower()
    assert b"content-transfer-encoding: base64" in headers.lower()
    certificate = await certificate_from_pkcs7(pki, body, "oven-cert")
    verified = await run("openssl", "verify", "-CAfile", pki / "ca.pem", "-purpose", "sslclient", certificate)
    assert verified.strip().endswith(b"OK")
    subject = await run("openssl", "x509", "-in", certificate, "-noout", "-subject", "-nameopt", "RFC2253")
    assert subject.strip() == b"subject=CN=oven"

    renewal = await make_request(pki, "oven-new", "oven")
    _, renewed_body = await curl_post(
        server, pki, "simplereenroll", renewal, "--cert", certificate, "--key", pki / "oven.key"
    )
    renewed = await certificate_from_pkcs7(pki, renewed_body, "oven-renewed")
    assert (await run("openssl", "verify", "-CAfile", pki / "ca.pem", renewed)).strip().endswith(b"OK")
    new_key_pub = await run("openssl", "pkey", "-in", pki / "oven-new.key", "-pubout")
    renewed_pub = await run("openssl", "x509", "-in", renewed, "-noout", "-pubkey")
    assert new_key_pub == renewed_pub


async def test_csrattrs_decode_with_openssl(server: RunningServer, pki: Path) -> None:
    body = await run("curl", "--silent", "--fail", "--cacert", pki / "ca.pem", f"{server.url}{EST}/csrattrs")
    parsed = await run("openssl", "asn1parse", "-inform", "DER", stdin=base64.b64decode(body))
    assert b"prime256v1" in parsed
    assert b"ecdsa-with-SHA256" in parsed


async def test_serverkeygen_with_curl(server: RunningServer, pki: Path) -> None:
    csr = await make_request(pki, "throwaway", "oven")
    headers, body = await curl_post(server, pki, "serverkeygen", csr, "--user", "oven:123456")
    content_type = next(
        line.split(b":", 1)[1].strip()
        for line in headers.splitlines()
        if line.lower().startswith(b"content-type:")
    )
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type + b"\r\n\r\n" + body)
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    assert set(parts) == {"application/pkcs8", "application/pkcs7-mime"}
    assert all(part["Content-Transfer-Encoding"] == "base64" for part in parts.values())
    key_der = parts["application/pkcs8"].get_payload(decode=True)
    assert isinstance(key_der, bytes)
    key_pem = await run("openssl", "pkey", "-inform", "DER", stdin=key_der)
    (pki / "generated.key").write_bytes(key_pem)
    pkcs7_text = parts["application/pkcs7-mime"].get_payload(decode=False)
    assert isinstance(pkcs7_text, str)
    certificate = await certificate_from_pkcs7(pki, pkcs7_text.encode(), "generated")
    assert (await run("openssl", "verify", "-CAfile", pki / "ca.pem", certificate)).strip().endswith(b"OK")
    assert await run("openssl", "pkey", "-in", pki / "generated.key", "-pubout") == await run(
        "openssl", "x509", "-in", certificate, "-noout", "-pubkey"
    )


async def test_crl_with_openssl(server: RunningServer, pki: Path) -> None:
    csr = await make_request(pki, "oven", "oven")
    _, body = await curl_post(server, pki, "simpleenroll", csr, "--user", "oven:123456")
    certificate = await certificate_from_pkcs7(pki, body, "oven-cert")
    await server.service.registrar.revoke_appliance("oven")
    crl_der = await run("curl", "--silent", "--fail", "--cacert", pki / "ca.pem", f"{server.url}/crl")
    (pki / "crl.pem").write_bytes(await run("openssl", "crl", "-inform", "DER", stdin=crl_der))
    chain = pki / "ca-and-crl.pem"
    chain.write_bytes((pki / "ca.pem").read_bytes() + (pki / "crl.pem").read_bytes())
    tool = shutil.which("openssl")
    assert tool
    process = await asyncio.create_subprocess_exec(
        tool,
        "verify",
        "-crl_check",
        "-CAfile",
        chain,
        certificate,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode != 0
    assert b"certificate revoked" in output


async def test_curl_gets_the_challenge_then_202(server: RunningServer, pki: Path) -> None:
    csr = await make_request(pki, "fridge", "fridge")
    headers, status = await curl_post(
        server,
        pki,
        "simpleenroll",
        csr,
        "--anyauth",
        "--user",
        "fridge:135790",
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        fail=False,
    )
    assert status == b"202"
    assert b"www-authenticate: basic" in headers.lower()  # curl's first try had no credentials
    assert b"retry-after: 1" in headers.lower()
    assert len(server.service.policy.pending_requests()) == 1


def docs_block(after: str) -> str:
    """The first ```sh block of docs/standalone.md after the text ``after``."""
    text = (Path(__file__).parents[2] / "docs" / "standalone.md").read_text()
    rest = text[text.index(after) :]
    start = rest.index("```sh\n") + len("```sh\n")
    return rest[start : rest.index("```\n", start)]


async def test_the_documented_curl_and_openssl_commands_work_as_written(
    server: RunningServer, tmp_path: Path
) -> None:
    """In bash with the real tools (GNU coreutils among them) against the real listener, errors fatal.

    Answers end their base64 lines in CRLF, which GNU ``base64 -d`` refuses: the docs once piped
    them into it.
    """
    block = docs_block("With `curl` and `openssl` as the client")
    assert "127.0.0.1:8443" in block
    script = "set -euo pipefail\n" + block.replace("127.0.0.1:8443", f"127.0.0.1:{server.service.port}")
    bash = shutil.which("bash")
    assert bash
    process = await asyncio.create_subprocess_exec(
        bash, "-c", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode(errors="replace")
    fingerprint, *verified = stdout.decode().splitlines()
    assert fingerprint.split("=")[1].replace(":", "").lower() == server.service.ca.fingerprint
    assert verified == ["oven.pem: OK", "oven-renewed.pem: OK"]
    assert [r.appliance_id for r in server.service.ledger.for_appliance("oven")] == ["oven", "oven"]
