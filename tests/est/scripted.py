"""A scripted EST server over TLS on 127.0.0.1: answers the library's listener never gives on cue.

Each simpleenroll or simplereenroll takes the next step of its script, a status with headers and a
one-line reason; once the script runs out, it gives the operation's standing answer, if any, else it
issues a certificate from its household CA for the request's key. /cacerts answers with that CA, so
the appliance bootstraps trust as usual; it offers no PIN exchange (``--legacy-basic`` reaches it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import socket

from aiohttp import web
from cryptography.x509.oid import NameOID

from custom_components.est_pairing.est import wire
from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames, server_ssl_context
from custom_components.est_pairing.est.wire import EST_PATH

from . import forge


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted answer."""

    status: int
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ScriptedHub:
    """What the server answered, in order: (operation, status)."""

    ca: HouseholdCA
    url: str
    script: list[Step]
    lifetime: timedelta
    always: dict[str, Step] = field(default_factory=dict)  # operation -> its answer once the script ran out
    answered: list[tuple[str, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        operation = request.match_info["operation"]
        if operation not in {"cacerts", "simpleenroll", "simplereenroll"}:
            return web.Response(status=404, text="unknown EST operation")  # no PIN exchange, say
        if operation == "cacerts":
            return web.Response(
                body=wire.encode_certs_only([self.ca.certificate]),
                headers={"Content-Type": wire.CERTS_ONLY},
            )
        csr = wire.load_csr(await request.read())
        step = self.script.pop(0) if self.script else self.always.get(operation)
        if step is not None:
            self.answered.append((operation, step.status))
            return web.Response(status=step.status, text=step.reason, headers=step.headers)
        self.answered.append((operation, 200))
        (common_name,) = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        certificate = forge.issued_by(
            self.ca,
            csr.public_key(),
            common_name=str(common_name.value),
            not_before=datetime.now(UTC) - timedelta(seconds=5),
            lifetime=self.lifetime,
        )
        return web.Response(
            body=wire.encode_certs_only([certificate]), headers={"Content-Type": wire.CERTS_ONLY}
        )


@asynccontextmanager
async def serving_tls(ca: HouseholdCA, app: web.Application) -> AsyncIterator[str]:
    """Serve a bare aiohttp ``app`` over TLS on 127.0.0.1 with a certificate from ``ca``; its URL."""
    listening = socket.create_server(("127.0.0.1", 0))
    identity = ListenerIdentity.issue(ca, ListenerNames.from_hosts(["127.0.0.1"]), datetime.now(UTC))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.SockSite(
            runner, listening, ssl_context=server_ssl_context(identity, ca.certificate)
        ).start()
        yield f"https://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        await runner.cleanup()
        listening.close()


@asynccontextmanager
async def scripted_hub(
    ca: HouseholdCA, script: Iterable[Step] = (), *, lifetime: timedelta = timedelta(days=30)
) -> AsyncIterator[ScriptedHub]:
    """Serve ``script`` (then certificates) until the block ends."""
    app = web.Application()
    hub = ScriptedHub(ca, "", list(script), lifetime)
    app.router.add_route("*", f"{EST_PATH}/{{operation}}", hub.handle)
    async with serving_tls(ca, app) as url:
        hub.url = url
        yield hub
