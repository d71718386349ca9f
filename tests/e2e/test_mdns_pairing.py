"""End to end over real mDNS, isolated: Home Assistant and the appliance in a network namespace of their own.

The scenario (namespace/scenario_mdns_pairing.py) runs in a separate pytest process started with
``unshare --net``: a fresh namespace holds only a loopback interface, which tests/e2e/netns.py brings
up with multicast routed over it. Home Assistant's real zeroconf and the appliance's browse meet there,
and nothing they send can reach the machine's own interfaces.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # end to end: Home Assistant and the appliance over real mDNS in a namespace

ROOT = Path(__file__).parents[2]
SCENARIO = Path(__file__).parent / "namespace" / "scenario_mdns_pairing.py"
TIMEOUT = 300  # seconds; the scenario takes about ten (plus Home Assistant's start-up)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a network namespace needs root (CI runs as root)")
def test_appliance_pairs_over_real_mdns_in_a_private_namespace() -> None:
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux unshare is needed to create the network namespace"
    command = [unshare, "--net", "--", sys.executable, "-m", "tests.e2e.netns"]
    command += [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--no-cov", str(SCENARIO)]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert "1 passed" in finished.stdout, output
