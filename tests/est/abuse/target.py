"""A running EST server as the abuse cases see it: its port and CA, its owner, and its ledger."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import secrets
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.fingerprints import public_key_fingerprint
from custom_components.est_pairing.est.storage import JournalFile
from est_tools.appliance.client import client_ssl_context

from .. import forge, rawhttp
from ..standalone import est_server

EST = "/.well-known/est"
type ClientIdentity = tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]


@dataclass
class Target:
    """One server under test. ``user:pin`` is an appliance it was started with (``--user``)."""

    host: str
    port: int
    ca: x509.Certificate
    data_dir: Path
    user: str = "oven"
    pin: str = "123456"
    reserved_name: str = "localhost"  # a name the listener answers to: no appliance may take it
    auto_approve: bool = False  # the server approves every well-formed request (--auto-approve)
    legitimate: set[int] = field(default_factory=set)  # serials a case obtained on purpose

    # --- talking to the listener ------------------------------------------------------------------

    def tls(self, client: ClientIdentity | None = None) -> ssl.SSLContext:
        """A context that verifies the server against its CA, optionally with a client certificate."""
        if client is None:
            return client_ssl_context(self.ca)
        return client_ssl_context(self.ca, certificate=client[0], private_key=client[1])

    async def exchange(
        self, request: bytes, *, tls: bool = True, client: ClientIdentity | None = None
    ) -> rawhttp.RawResponse | None:
        """Send raw bytes on a new connection; the answer, or None if the server closed without one."""
        try:
            context = self.tls(client) if tls else None
            async with rawhttp.connect(self.port, tls=context, host=self.host) as connection:
                await connection.send(request)
                return await connection.response()
        except (ssl.SSLError, ConnectionError):  # refused during the handshake
            return None

    def enroll_request(
        self,
        operation: str,
        body: bytes,
        *,
        user: str | None = None,
        pin: str | None = None,
        headers: dict[str, str] | None = None,
        authorization: bool = True,
    ) -> bytes:
        """A POST of ``body`` as application/pkcs10, with this target's credentials unless told."""
        all_headers = {"Content-Type": wire.PKCS10}
        if authorization:
            all_headers["Authorization"] = wire.basic_authorization(user or self.user, pin or self.pin)
        all_headers.update(headers or {})
        return rawhttp.http_request("POST", f"{EST}/{operation}", headers=all_headers, body=body)

    async def enroll(
        self,
        body: bytes,
        *,
        operation: str = "simpleenroll",
        user: str | None = None,
        pin: str | None = None,
        client: ClientIdentity | None = None,
    ) -> rawhttp.RawResponse | None:
        """One enrollment request with this target's credentials (unless told otherwise)."""
        return await self.exchange(self.enroll_request(operation, body, user=user, pin=pin), client=client)

    async def serves(self) -> bool:
        """Whether a plain GET /cacerts still gets its 200."""
        answer = await self.exchange(rawhttp.http_request("GET", f"{EST}/cacerts"))
        return answer is not None and answer.status == 200

    # --- legitimate set-up steps --------------------------------------------------------------------

    async def enrolled(
        self,
        appliance_id: str | None = None,
        pin: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> ClientIdentity:
        """A certificate obtained the honest way (approved by the owner when the server asks for it)."""
        key = forge.new_key()
        appliance_id = appliance_id or self.user
        body = forge.body(forge.build(key, appliance_id))
        answer = await self.enroll(body, user=appliance_id, pin=pin)
        if answer is not None and answer.status == 202:  # a new key: the owner checks its PIN
            fingerprint = public_key_fingerprint(key.public_key())
            await self.owner("approve", appliance_id, key=fingerprint, pin=pin or self.pin)
            answer = await self.enroll(body, user=appliance_id, pin=pin)
        assert answer is not None and answer.status == 200, f"could not enroll {appliance_id}: {answer}"
        (certificate,) = wire.decode_certs_only(answer.body)
        self.legitimate.add(certificate.serial_number)
        return certificate, key

    def fresh_id(self, stem: str) -> str:
        """An appliance id no other case uses."""
        return f"{stem}-{secrets.token_hex(4)}"

    # --- the owner and the files --------------------------------------------------------------------

    async def owner(
        self, command: str, appliance_id: str, *, key: str | None = None, pin: str | None = None
    ) -> str:
        """approve / reject / revoke, as the owner types it: ``est-server COMMAND ID --data-dir DIR``."""
        arguments = [command, appliance_id, "--data-dir", str(self.data_dir)]
        if key is not None:
            arguments += ["--key", key]
        if pin is not None:
            arguments += ["--pin", pin]
        code, stdout, stderr = await est_server(*arguments)
        assert code == 0, f"est-server {command} {appliance_id}: {stderr.strip()}"
        return stdout.strip()

    def issued_serials(self) -> set[int]:
        """Every serial the ledger on disk lists as issued (the ledger must parse)."""
        events = JournalFile(self.data_dir / "ledger.jsonl").read_sync()
        return {int(e["serial"], 16) for e in events if e["op"] == "issued"}

    def ca_key(self) -> CertificateIssuerPrivateKeyTypes:
        """The household CA's key, read from the data directory (only to mint an expired twin)."""
        key = serialization.load_pem_private_key((self.data_dir / "ca.key").read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
