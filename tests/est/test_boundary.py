"""The protocol library never imports Home Assistant, so it can be lifted out unchanged."""

from __future__ import annotations

import ast
from pathlib import Path
import subprocess
import sys

LIBRARY = Path(__file__).parents[2] / "custom_components" / "est_pairing" / "est"


def library_modules() -> list[str]:
    return sorted(f"est.{path.stem}" for path in LIBRARY.glob("*.py") if path.stem != "__init__")


def test_no_module_names_homeassistant_in_its_imports() -> None:
    offenders = []
    for path in LIBRARY.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "homeassistant"]
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                offenders.append(f"{path.name}: relative import above the library")
    assert offenders == []


def test_every_module_imports_standalone_without_homeassistant() -> None:
    modules = library_modules()
    assert {"est.server", "est.client", "est.cli"} <= set(modules)
    script = (
        f"import importlib, sys; sys.path.insert(0, {str(LIBRARY.parent)!r})\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'homeassistant')\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=LIBRARY.parents[2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
