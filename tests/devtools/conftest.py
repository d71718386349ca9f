"""The benchmark tools need no Home Assistant either: the library tests' fixtures, shared."""

from __future__ import annotations

from pathlib import Path
import sys

from tests.est.conftest import (  # noqa: F401 - fixtures, found by name
    allow_loopback_sockets,
    auto_enable_custom_integrations,
    ca,
    config_dir,
    loopback_only,
    zeroconf,
)

# The bench runs with the protocol library on its path as ``est`` (scripts/bench sets PYTHONPATH so);
# its summary and phases import it that way.
_LIBRARY = str(Path(__file__).resolve().parents[2] / "custom_components" / "est_pairing")
if _LIBRARY not in sys.path:
    sys.path.append(_LIBRARY)
