"""Bytes on the wire: raw TCP or TLS connections to the listener, for requests no HTTP client would send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
import ssl

HOST = "127.0.0.1"


def tls_context(ca_pem: bytes | None = None) -> ssl.SSLContext:
    """A client context that trusts the household CA (or nothing at all, when ``ca_pem`` is None)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_pem is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cadata=ca_pem.decode())
    return context


@dataclass(frozen=True, slots=True)
class RawResponse:
    """One HTTP response as it came off the wire."""

    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode(errors="replace")

    @property
    def reason_given(self) -> str:
        """A refusal's one-line reason: its body, else (a 401 has none) its status line's phrase."""
        return self.text.strip() if self.body else self.reason.strip()

    def is_one_line_refusal(self) -> bool:
        """``text/plain``, a Content-Length that matches, and exactly one line of reason; for a 401, no
        body at all (``Content-Length: 0``) and the reason in the status line instead."""
        if self.status == 401:
            return (
                "content-type" not in self.headers
                and self.headers.get("content-length") == "0"
                and not self.body
                and len(self.reason.strip()) > 0
            )
        return (
            self.headers.get("content-type", "").startswith("text/plain")
            and self.headers.get("content-length") == str(len(self.body))
            and self.body.endswith(b"\n")
            and self.body.count(b"\n") == 1
            and len(self.body.strip()) > 0
        )


class Connection:
    """A connection to the listener that sends whatever it is told to and reads responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        """Write and flush (a peer that already closed is not an error here)."""
        self.writer.write(data)
        with suppress(ConnectionError):
            await self.writer.drain()

    async def response(self, within: float = 10.0, *, to_head: bool = False) -> RawResponse | None:
        """Read one response (``to_head``: to a HEAD request, so without a body); None when the server
        closed the connection without a complete answer."""
        async with asyncio.timeout(within):
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
                status_line, *header_lines = head.decode("latin-1").split("\r\n")
                _, status, reason = [*status_line.split(" ", 2), ""][:3]
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                length = 0 if to_head else int(headers.get("content-length", "0"))
                body = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                return None
            return RawResponse(int(status), reason, headers, body)

    async def closed_by_server(self, within: float) -> bool:
        """Whether the server closes the connection within ``within`` seconds (sending nothing more)."""
        try:
            async with asyncio.timeout(within):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        return True

    async def close(self) -> None:
        """Close our end."""
        self.writer.close()
        with suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@asynccontextmanager
async def connect(port: int, *, tls: ssl.SSLContext | None, host: str = HOST) -> AsyncIterator[Connection]:
    """A connection to ``host``:``port``, over TLS unless ``tls`` is None."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls is not None else None
        )
    connection = Connection(reader, writer)
    try:
        yield connection
    finally:
        await connection.close()


async def exchange(port: int, request: bytes, *, tls: ssl.SSLContext | None) -> RawResponse | None:
    """Send ``request`` on a new connection and read one response."""
    async with connect(port, tls=tls) as connection:
        await connection.send(request)
        return await connection.response()


def http_request(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """A request as bytes; Host and (for a body) Content-Length are added unless given."""
    all_headers = {"Host": HOST, **(headers or {})}
    if body is not None and not any(name.lower() == "transfer-encoding" for name in all_headers):
        all_headers.setdefault("Content-Length", str(len(body)))
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in all_headers.items())
    return head.encode("latin-1") + b"\r\n" + (body or b"")


def chunked(data: bytes, size: int = 1000) -> bytes:
    """``data`` as a chunked transfer-coding."""
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
