"""Fixtures of the scenarios that need a real network: nothing is mocked or patched here.

These scenarios multicast for real, so they refuse to run anywhere but in the private network
namespace that tests/e2e/netns.py prepares (tests/e2e/test_mdns_pairing.py starts them there).
"""

from __future__ import annotations

from homeassistant.components.network.const import MDNS_TARGET_IP
import pytest
import pytest_socket

from tests.components.est_pairing.conftest import (  # noqa: F401 - fixtures, found by name
    auto_enable_custom_integrations,
    config_dir,
)
from tests.e2e.netns import in_prepared_namespace


@pytest.fixture(scope="session", autouse=True)
def private_network_namespace() -> None:
    """Stop before anything touches the network unless this is the prepared namespace."""
    if not in_prepared_namespace():
        pytest.exit(
            "these scenarios multicast: run them through tests/e2e/test_mdns_pairing.py, which starts "
            "them in a private network namespace (unshare --net -- python -m tests.e2e.netns ...)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


# The Home Assistant plugin's session-wide network mocks (a fake eth0 at 10.10.10.10): here the
# network integration sees the namespace's real loopback.
@pytest.fixture(scope="session", autouse=True)
def mock_network() -> None:
    """The real network adapters."""


@pytest.fixture(scope="session", autouse=True)
def mock_get_source_ip() -> None:
    """The real source address."""


# Unlike the other Home Assistant tests: real zeroconf, real bind address, real names.
@pytest.fixture(autouse=True)
def real_network(socket_enabled: None) -> None:
    """Sockets allowed; the pytest-socket host filter also lets the mDNS group through.

    Home Assistant's network integration learns its source address by connect()ing a UDP socket to
    the mDNS group; pytest-socket would refuse that connect (it allows 127.0.0.1 only).
    """
    pytest_socket.socket_allow_hosts(["127.0.0.1", MDNS_TARGET_IP])
