"""Tests of est_tools (the appliance side, the standalone server): the library tests' fixtures, shared."""

from __future__ import annotations

from tests.est.conftest import (  # noqa: F401 - fixtures, found by name
    allow_loopback_sockets,
    ca,
    certificate,
    server,
)
