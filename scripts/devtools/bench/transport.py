"""The transport limit's server: the EST listener's TLS and aiohttp stack, answering a fixed 1 KiB body.

Same data directory, certificate and TLS context as ``est-server serve``, the same EstListener
(connection guard, handshake timeout, runner settings) and middlewares; only the handler differs:
it reads the request body and answers 1 KiB without parsing, signing or recording anything.

    python -m scripts.devtools.bench.transport --data-dir DIR [--host 127.0.0.1] [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import signal
from typing import Final

from est_tools.library import without_home_assistant

if __name__ == "__main__":  # a server process of its own, like est-server's: without Home Assistant too
    without_home_assistant()

from aiohttp import hdrs, web

from custom_components.est_pairing.est.guard import ConnectionGuard
from custom_components.est_pairing.est.server import EstApplication, EstListener
from custom_components.est_pairing.est.service import ServiceConfig
from custom_components.est_pairing.est.tls import ListenerNames, server_ssl_context
from custom_components.est_pairing.est.wire import CERTS_ONLY, TRANSFER_ENCODING
from est_tools.standalone.cli import open_service

FIXED_PATH: Final = "/bench/fixed-1k"
FIXED_BODY: Final = b"A" * 1022 + b"\r\n"  # base64-looking, 1 KiB


class FixedBodyApplication(EstApplication):
    """The EST application with one more route, answering every POST the same 1 KiB."""

    def build(self, guard: ConnectionGuard | None = None) -> web.Application:
        """The EST app (its middlewares included) plus the fixed-body route."""
        app = super().build(guard)
        app.router.add_post(FIXED_PATH, _fixed_body)
        return app


async def _fixed_body(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=FIXED_BODY, headers={hdrs.CONTENT_TYPE: CERTS_ONLY, TRANSFER_ENCODING: "base64"})


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    config = ServiceConfig(
        ca_name="Bench",
        port=args.port,
        bind_host=args.host,
        names=ListenerNames.from_hosts([args.host, "localhost", "127.0.0.1"]),
    )
    service = open_service(args.data_dir, config)
    await service.load()
    context = await asyncio.to_thread(server_ssl_context, service.listener_identity, [service.ca.certificate])
    listener = EstListener(
        FixedBodyApplication(service.registrar), host=args.host, port=args.port, ssl_context=context
    )
    await listener.start()
    print(f"listening on https://{args.host}:{listener.port}{FIXED_PATH}", flush=True)
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await listener.stop()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
