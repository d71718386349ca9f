"""The benchmark tools need no Home Assistant either: the library tests' fixtures, shared."""

from __future__ import annotations

from tests.est.conftest import (  # noqa: F401 - fixtures, found by name
    allow_loopback_sockets,
    ca,
)
