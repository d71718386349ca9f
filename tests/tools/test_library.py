"""The command lines start without Home Assistant, though the library's one name is inside the integration."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

from est_tools.library import INTEGRATION, without_home_assistant

ROOT = Path(__file__).parents[2]
LIBRARY = ROOT / "custom_components" / "est_pairing" / "est"


def test_the_commands_and_the_whole_library_load_no_home_assistant() -> None:
    modules = sorted(f"custom_components.est_pairing.est.{path.stem}" for path in LIBRARY.glob("*.py"))
    script = (
        "import importlib, sys\n"
        "from est_tools.library import without_home_assistant\n"
        "without_home_assistant()\n"
        f"for name in {[*modules, 'est_tools.standalone.cli', 'est_tools.appliance.cli']!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'homeassistant'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
    assert len(modules) > 20


def test_it_leaves_a_loaded_integration_alone() -> None:
    """In Home Assistant's process (here: the test harness's) the integration stays the real one."""
    loaded = sys.modules[INTEGRATION]
    without_home_assistant()
    assert sys.modules[INTEGRATION] is loaded
    assert hasattr(loaded, "async_setup_entry")
