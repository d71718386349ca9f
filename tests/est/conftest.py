"""Library tests: no Home Assistant instance, real sockets on 127.0.0.1."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """The library needs no Home Assistant: override the package-wide autouse fixture."""


@pytest.fixture(autouse=True)
def zeroconf() -> None:
    """No Home Assistant zeroconf either."""


@pytest.fixture(autouse=True)
def allow_loopback_sockets(socket_enabled: None) -> None:
    """Real TLS listeners on 127.0.0.1 (the Home Assistant plugin blocks sockets by default)."""
