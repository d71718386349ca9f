"""Run a real Home Assistant with this integration loaded from the repository (scripts/develop).

Creates ``config/`` on first run (configuration.yaml, and custom_components/est_pairing as a link to
the repository, so edits apply on restart), installs what Home Assistant would install at start-up,
runs ``hass -c config``, completes onboarding through the REST API with a local owner account
(printed on start), and runs until Ctrl-C.

``--isolated`` runs Home Assistant inside a private network namespace (``ip netns``, root only) with
loopback only, so none of its mDNS leaves this machine; http://127.0.0.1:8123 outside is forwarded
to it. Other commands join the namespace with ``ip netns exec est-dev ...``.

``--appliance`` also starts a simulated appliance (scripts/appliance) beside Home Assistant: it finds
the EST server over mDNS once the integration is added, asks to enroll, and waits for approval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path
import secrets
import shlex
import shutil
import signal
import subprocess
import sys

import aiohttp

from scripts.devtools.ha_api import HomeAssistantApi, Owner

ROOT = Path(__file__).resolve().parents[2]
NETNS = "est-dev"
HTTP_PORT = 8123
CONFIGURATION = """\
# Created by scripts/develop: a Home Assistant for developing EST Appliance Pairing.
homeassistant:
  name: Home
  time_zone: UTC
  country: US
  unit_system: metric
  currency: EUR

logger:
  default: warning
  logs:
    custom_components.est_pairing: debug
    homeassistant.components.zeroconf: info

frontend:
config:
"""


def prepare_config(config: Path) -> None:
    """Create the configuration directory once; link the integration into it."""
    config.mkdir(exist_ok=True)
    configuration = config / "configuration.yaml"
    if not configuration.exists():
        configuration.write_text(CONFIGURATION)
    link = config / "custom_components" / "est_pairing"
    link.parent.mkdir(exist_ok=True)
    if not link.is_symlink():
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(ROOT / "custom_components" / "est_pairing")


def owner_account(config: Path) -> Owner:
    """The local owner account: created once with a random password, kept in config/ (0600)."""
    path = config / ".develop-owner.json"
    if path.exists():
        return Owner(**json.loads(path.read_text()))
    owner = Owner(name="Owner", username="owner", password=secrets.token_urlsafe(12))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(owner.__dict__, handle)
    return owner


# Onboarding adds these; without a route to the internet they cannot work, so isolated runs drop them.
NEEDS_INTERNET = {"radio_browser", "met"}


async def onboard(owner: Owner, *, isolated: bool) -> None:
    """Wait for Home Assistant, then onboard it (once) with the owner account."""
    async with aiohttp.ClientSession() as session:
        api = HomeAssistantApi(session, f"http://127.0.0.1:{HTTP_PORT}")
        await api.wait_until_up()
        if await api.onboard(owner):
            print("scripts/develop: onboarding done", flush=True)
            if isolated:
                await asyncio.sleep(5)  # let onboarding's integrations try to set up
                await api.login(owner)
                for title in await api.remove_failed_entries(NEEDS_INTERNET):
                    print(f"scripts/develop: removed {title} (it needs the internet)", flush=True)
    print(
        f"scripts/develop: Home Assistant is ready at http://127.0.0.1:{HTTP_PORT}\n"
        f"scripts/develop: log in as '{owner.username}' with password '{owner.password}'",
        flush=True,
    )


def install_requirements(python: list[str], config: Path) -> None:
    """Let Home Assistant install its start-up requirements while the network is reachable."""
    subprocess.run(
        [
            *python,
            str(ROOT / "scripts" / "devtools" / "install_ha_requirements.py"),
            str(config),
            "est_pairing",
            "config",
        ],
        check=True,
    )


def create_namespace() -> None:
    """A network namespace with loopback up and multicast routed over it (for mDNS)."""
    if os.geteuid() != 0:
        sys.exit("scripts/develop --isolated needs root (it creates a network namespace)")
    if not Path(f"/run/netns/{NETNS}").exists():
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
    ip = ["ip", "-n", NETNS]
    subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
    subprocess.run([*ip, "link", "set", "lo", "multicast", "on"], check=True)
    subprocess.run([*ip, "route", "replace", "224.0.0.0/4", "dev", "lo"], check=True)


def delete_namespace() -> None:
    """Remove the namespace (processes still inside keep it alive until they exit)."""
    subprocess.run(["ip", "netns", "delete", NETNS], check=False)


async def forward(port: int) -> asyncio.Server:
    """Listen on 127.0.0.1:port here; connect each client to 127.0.0.1:port in the namespace.

    The listening socket is bound before entering the namespace, so it stays outside; sockets made
    afterwards belong to the namespace.
    """

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            inner_reader, inner_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, inner_writer), pipe(inner_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    namespace = os.open(f"/run/netns/{NETNS}", os.O_RDONLY)
    try:
        os.setns(namespace, os.CLONE_NEWNET)
    finally:
        os.close(namespace)
    return server


APPLIANCE = {"id": "oven-7f3a", "name": "Kitchen oven", "model": "OV-200", "manufacturer": "Acme"}


async def start_appliance(config: Path, pin: str) -> asyncio.subprocess.Process:
    """The simulated appliance, in this process's network namespace, its state kept in config/."""
    print(
        f"scripts/develop: simulated appliance '{APPLIANCE['name']}' (id {APPLIANCE['id']}) starts; "
        f"its PIN is {pin}",
        flush=True,
    )
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "est_tools.appliance",
        "--id",
        APPLIANCE["id"],
        "--pin",
        pin,
        "--name",
        APPLIANCE["name"],
        "--model",
        APPLIANCE["model"],
        "--manufacturer",
        APPLIANCE["manufacturer"],
        "--serial",
        "SN-0042",
        "--state-dir",
        str(config / ".appliance"),
        # It waits for the owner to add the integration, then to approve it.
        "--discovery-timeout",
        "3600",
        "--approval-timeout",
        "3600",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def stop_group(process: asyncio.subprocess.Process) -> None:
    """Ask every process in the process group that ``process`` leads to stop."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)


async def run(args: argparse.Namespace) -> int:
    """Start Home Assistant (isolated or not) and wait for it to exit."""
    config: Path = args.config
    command = [*args.python, "-m", "homeassistant", "-c", str(config)]
    server = None
    if args.isolated:
        create_namespace()
        command = ["ip", "netns", "exec", NETNS, *command]
        server = await forward(HTTP_PORT)
    # Its own process group: a wrapper in the command (ip netns exec, a chroot's unshare) may not
    # pass signals on, so a stop goes to every process of the group.
    process = await asyncio.create_subprocess_exec(*command, start_new_session=True)
    print(f"scripts/develop: Home Assistant starting at http://127.0.0.1:{HTTP_PORT}", flush=True)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_group, process)
    onboarding = asyncio.create_task(onboard(owner_account(config), isolated=args.isolated))
    appliance = await start_appliance(config, args.appliance_pin) if args.appliance else None
    try:
        return await process.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of it outlived its leader
        onboarding.cancel()
        if appliance is not None and appliance.returncode is None:
            appliance.terminate()
            await appliance.wait()
        if server is not None:
            server.close()
        if args.isolated:
            delete_namespace()


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="run inside a private network namespace: no mDNS leaves this machine (root)",
    )
    parser.add_argument(
        "--appliance", action="store_true", help="also start a simulated appliance that asks to pair"
    )
    parser.add_argument(
        "--appliance-pin",
        default=f"{secrets.randbelow(10**6):06d}",
        help="the simulated appliance's PIN (default: random, printed on start)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=ROOT / "config",
        help="Home Assistant configuration directory (default: config/ in the repository)",
    )
    parser.add_argument(
        "--python",
        type=shlex.split,
        default=[sys.executable],
        help="the command that runs Home Assistant's Python (default: this one); e.g. another"
        " release's: '../shared/tools/py314/run --exec $PWD /opt/ha-newest/bin/python'",
    )
    args = parser.parse_args()
    args.config = args.config.resolve()
    prepare_config(args.config)
    install_requirements(args.python, args.config)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
