"""The hub's protocol library for the command lines, without loading Home Assistant.

The library's one import name is ``custom_components.est_pairing.est``, and importing it runs the
integration's ``__init__``, which imports Home Assistant: a second and some 50 MB more for a server or
an appliance that never uses it. The command lines' ``__main__`` modules call
:func:`without_home_assistant` before their first import of the library.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
import sys

INTEGRATION = "custom_components.est_pairing"
_INTEGRATION_DIRECTORY = Path(__file__).resolve().parents[1] / "custom_components" / "est_pairing"


def without_home_assistant() -> None:
    """Register the integration as a bare package that only finds its submodules (the library).

    For a process that never loads the integration itself; nothing changes where it is loaded already.
    """
    if INTEGRATION in sys.modules:
        return
    spec = importlib.machinery.ModuleSpec(INTEGRATION, None, is_package=True)
    spec.submodule_search_locations = [str(_INTEGRATION_DIRECTORY)]
    sys.modules[INTEGRATION] = importlib.util.module_from_spec(spec)
