"""The owner's flow in a real Home Assistant and a real browser (scripts/browser-test).

Starts ``scripts/develop --isolated --appliance`` with a fresh configuration, so Home Assistant, the
simulated appliance and (here) headless Chromium all run inside the ``est-dev`` network namespace,
then drives tests/browser/owner_flow.mjs through the flow and stops everything. Screenshots go to a
temporary directory, or to docs/images with ``--update-images``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import tempfile

from PIL import Image
import zxingcpp

from scripts.devtools.develop import NETNS

ROOT = Path(__file__).resolve().parents[2]
BROWSER = ROOT / "tests" / "browser"
IMAGES = ROOT / "docs" / "images"
APPLIANCE_NAME = "Kitchen oven"
READY = re.compile(r"log in as '(?P<user>[^']+)' with password '(?P<password>[^']+)'")
PIN = re.compile(r"its PIN is (?P<pin>\d+)")
QR_SHOT = "*-hub-qr-code.png"
ENROLLMENT_PAYLOAD = re.compile(r"est://[^/]+/\.well-known/est\?sha256=[0-9a-f]{64}")


def preflight() -> None:
    """Fail with a reason, never skip: root, Chromium, Node and the playwright-core package."""
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (it creates a network namespace)")
    if not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        problems.append("Chromium is missing (apt-get install --no-install-recommends chromium)")
    if shutil.which("node") is None:
        problems.append("Node.js is missing")
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        problems.append("playwright-core is missing (npm ci --prefix tests/browser)")
    if problems:
        sys.exit("scripts/browser-test cannot run: " + "; ".join(problems))


COMPLAINT = re.compile(r"\b(?:WARNING|ERROR|CRITICAL)\b.*\best_pairing\b")
# Home Assistant says this of every custom integration it loads.
CUSTOM_INTEGRATION_NOTICE = "We found a custom integration est_pairing"


def is_complaint(line: str) -> bool:
    """A warning or error logged about this integration (the flow must run without any)."""
    return COMPLAINT.search(line) is not None and CUSTOM_INTEGRATION_NOTICE not in line


def qr_code_problem(shots: Path) -> str | None:
    """Whether the hub's screenshot shows a QR code that scans to an enrollment payload (ZXing reads it)."""
    pictures = sorted(shots.glob(QR_SHOT))
    if not pictures:
        return "no screenshot of the hub's QR code"
    texts = [code.text for code in zxingcpp.read_barcodes(Image.open(pictures[0]))]
    if not any(ENROLLMENT_PAYLOAD.fullmatch(text) for text in texts):
        return f"the QR code screenshot does not scan to an enrollment payload (read: {texts})"
    return None


def kill_namespace() -> None:
    """Kill what is left in develop's network namespace.

    Home Assistant runs in a process group of its own there, which a kill of develop's group does not
    reach.
    """
    listed = subprocess.run(["ip", "netns", "pids", NETNS], capture_output=True, text=True, check=False)
    for pid in listed.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


async def echo(
    stream: asyncio.StreamReader, complaints: list[str], until: re.Pattern[str] | None = None
) -> re.Match[str] | None:
    """Echo develop's output so its pipe never fills, keeping the complaints; stop at ``until``."""
    while line := (await stream.readline()).decode(errors="replace"):
        print(line, end="", flush=True)
        if is_complaint(line):
            complaints.append(line.rstrip())
        if until is not None and (match := until.search(line)):
            return match
    return None


async def read_until(
    stream: asyncio.StreamReader, pattern: re.Pattern[str], patience: float, complaints: list[str]
) -> re.Match[str]:
    """Echo lines until one matches, keeping the complaints."""
    async with asyncio.timeout(patience):
        if (match := await echo(stream, complaints, pattern)) is not None:
            return match
    raise RuntimeError(f"scripts/develop ended before printing /{pattern.pattern}/")


async def run(shots: Path, python: str | None) -> int:
    """Run the flow; returns the browser test's exit code."""
    # Another release's Python may run in a chroot that sees only the repository, so its
    # configuration directory is made inside it then.
    config = Path(tempfile.mkdtemp(prefix=".browser-ha-", dir=ROOT if python else None))
    develop = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.devtools.develop",
        "--isolated",
        "--appliance",
        "--config",
        str(config),
        *(["--python", python] if python else []),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # so that a kill reaches the appliance it started too
    )
    if develop.stdout is None:
        raise RuntimeError("no pipe from scripts/develop")
    try:
        complaints: list[str] = []
        pin = (await read_until(develop.stdout, PIN, 600, complaints))["pin"]
        login = await read_until(develop.stdout, READY, 600, complaints)
        echoing = asyncio.create_task(echo(develop.stdout, complaints))
        browser = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            "est-dev",
            "node",
            str(BROWSER / "owner_flow.mjs"),
            env={
                **os.environ,
                "HA_USER": login["user"],
                "HA_PASSWORD": login["password"],
                "APPLIANCE_NAME": APPLIANCE_NAME,
                "APPLIANCE_PIN": pin,
                "SHOTS_DIR": str(shots),
            },
        )
        code = await browser.wait()
        await asyncio.sleep(1)  # what Home Assistant logged about the last step
        echoing.cancel()
        for line in complaints:
            print(f"scripts/browser-test: Home Assistant complained: {line}", file=sys.stderr)
        if code == 0 and (problem := qr_code_problem(shots)) is not None:
            print(f"scripts/browser-test: {problem}", file=sys.stderr)
            return 1
        return code or (1 if complaints else 0)
    finally:
        if develop.returncode is None:
            develop.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(develop.wait(), 60)
        if develop.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(develop.pid, signal.SIGKILL)
            kill_namespace()
        shutil.rmtree(config, ignore_errors=True)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--update-images", action="store_true", help="write the screenshots to docs/images")
    parser.add_argument(
        "--python",
        help="the command that runs Home Assistant's Python, passed to scripts/develop"
        " (default: .venv's; .ci/run passes the newest release's)",
    )
    args = parser.parse_args()
    preflight()
    shots = IMAGES if args.update_images else Path(tempfile.mkdtemp(prefix="est-browser-shots-"))
    if args.update_images:
        for old in IMAGES.glob("*.png"):
            old.unlink()
    code = asyncio.run(run(shots, args.python))
    for failed in shots.glob("failed-*.png"):
        print(f"scripts/browser-test: the failing page is in {failed}", file=sys.stderr)
    print(f"scripts/browser-test: {'passed' if code == 0 else 'FAILED'}; screenshots in {shots}")
    sys.exit(code)


if __name__ == "__main__":
    main()
