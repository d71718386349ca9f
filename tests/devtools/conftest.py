"""The benchmark tools need no Home Assistant either: the library tests' fixtures, shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.est.conftest import (  # noqa: F401 - fixtures, found by name
    allow_loopback_sockets,
    ca,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench_servers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Server processes the bench starts import the code as ``scripts/bench`` runs them."""
    library = ROOT / "custom_components" / "est_pairing"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(library)]))
