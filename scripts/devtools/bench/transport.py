"""The bare TLS request's server: aiohttp as its documentation sets it up, answering a fixed 1 KiB body.

What any aiohttp server pays for one request on a fresh TLS connection, and nothing of ours: a
``web.Application`` with one route that reads the request body and answers 1 KiB, served by
``web.AppRunner`` and ``web.TCPSite`` with the same TLS context (certificate, ciphers, optional
client certificates) as ``est-server serve``, on the event loop ``--loop`` names.

    python -m scripts.devtools.bench.transport --data-dir DIR [--host 127.0.0.1] [--port 0] [--loop asyncio]
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

from custom_components.est_pairing.est.service import ServiceConfig
from custom_components.est_pairing.est.tls import ListenerNames, server_ssl_context
from custom_components.est_pairing.est.wire import CERTS_ONLY, TRANSFER_ENCODING
from est_tools.standalone.cli import loop_factory, open_service

FIXED_PATH: Final = "/bench/fixed-1k"
FIXED_BODY: Final = b"A" * 1022 + b"\r\n"  # base64-looking, 1 KiB


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
    context = await asyncio.to_thread(server_ssl_context, service.listener_identity, service.ca.certificate)
    app = web.Application()
    app.router.add_post(FIXED_PATH, _fixed_body)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    print(f"listening on https://{args.host}:{port}{FIXED_PATH}", flush=True)
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await runner.cleanup()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    args = parser.parse_args()
    asyncio.run(serve(args), loop_factory=loop_factory(args.loop))


if __name__ == "__main__":
    main()
