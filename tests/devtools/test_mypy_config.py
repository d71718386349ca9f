"""The developer tools' mypy run (scripts/devtools/mypy.ini) is as strict as the main one (pyproject.toml).

Both ways: every setting of pyproject's [tool.mypy] is repeated with its value, the ini's [mypy] has
nothing pyproject lacks, every override of pyproject is repeated, and the ini's own per-module
sections hold only the import-following options its separate run needs (never ``ignore_errors``, a
disabled check, or any other relaxation).
"""

from __future__ import annotations

import configparser
from pathlib import Path
import tomllib
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
INI = ROOT / "scripts" / "devtools" / "mypy.ini"

# What the tools' run sets differently by design: what it checks, and where it finds the imports.
RUN_OF_ITS_OWN = {"files", "exclude", "mypy_path"}
TOOLS = {"scripts/devtools", "tests/devtools"}
# The per-module options the ini may set, and the values it may give them.
PER_MODULE_ALLOWED = {
    "follow_imports": {"silent", "skip"},
    "follow_imports_for_stubs": {"True"},
    "ignore_missing_imports": {"True"},
}


def main_settings() -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"])


def tools_settings(text: str | None = None) -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    if text is None:
        config.read(INI)
    else:
        config.read_string(text)
    return config


def as_ini(value: Any) -> str:
    """A pyproject value as the ini writes it."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def same(ini_value: str, value: Any) -> bool:
    if isinstance(value, bool):
        return ini_value.strip().lower() in (
            {"true", "1", "yes", "on"} if value else {"false", "0", "no", "off"}
        )
    if isinstance(value, list):
        return [item.strip() for item in ini_value.split(",")] == value
    return ini_value.strip() == str(value)


def problems(main: dict[str, Any], tools: configparser.ConfigParser) -> list[str]:
    """How the tools' configuration departs from the main one (empty: in step)."""
    found: list[str] = []
    general = tools["mypy"] if tools.has_section("mypy") else {}
    overrides = main.pop("overrides", [])
    for option, value in main.items():
        if option in RUN_OF_ITS_OWN:
            continue
        if option not in general:
            found.append(f"[mypy] lacks {option} = {as_ini(value)}")
        elif not same(general[option], value):
            found.append(f"[mypy] {option} = {general[option]}, not {as_ini(value)}")
    found += [
        f"[mypy] sets {option}, which pyproject does not"
        for option in general
        if option not in main and option not in RUN_OF_ITS_OWN
    ]
    if {path.strip() for path in general.get("files", "").split(",")} != TOOLS:
        found.append(f"[mypy] files must be exactly {', '.join(sorted(TOOLS))}")
    repeated = set()
    for override in overrides:
        name = f"mypy-{','.join(override['module'])}"
        repeated.add(name)
        if not tools.has_section(name):
            found.append(f"no [{name}] for pyproject's override")
            continue
        section = tools[name]
        for option, value in override.items():
            if option != "module" and (option not in section or not same(section[option], value)):
                found.append(f"[{name}] {option} is not {as_ini(value)}")
        found += [
            f"[{name}] sets {option}, which pyproject's override does not"
            for option in section
            if option not in override
        ]
    for name in tools.sections():
        if name == "mypy":
            continue
        if not name.startswith("mypy-"):
            found.append(f"[{name}] is no mypy section")
            continue
        if name in repeated:
            continue
        for option, value in tools[name].items():
            if value not in PER_MODULE_ALLOWED.get(option, set()):
                found.append(f"[{name}] {option} = {value} is not an allowed per-module option")
    return found


def test_the_developer_tools_mypy_run_repeats_the_main_settings_and_overrides() -> None:
    assert problems(main_settings(), tools_settings()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(
            ("strict = True", "strict = True\ndisallow_untyped_defs = False"),
            "[mypy] sets disallow_untyped_defs",
            id="a relaxation pyproject lacks",
        ),
        pytest.param(("strict = True", "strict = False"), "[mypy] strict = False", id="strict off"),
        pytest.param(
            ("warn_unreachable = True\n", ""), "[mypy] lacks warn_unreachable", id="a setting dropped"
        ),
        pytest.param(
            ("redundant-self, truthy-iterable", "redundant-self"),
            "[mypy] enable_error_code",
            id="an error code dropped",
        ),
        pytest.param(
            ("files = scripts/devtools, tests/devtools", "files = scripts/devtools"),
            "[mypy] files",
            id="the tests left out",
        ),
        pytest.param(
            ("[mypy-tests.est.*]", "[mypy-scripts.devtools.*]\nignore_errors = True\n\n[mypy-tests.est.*]"),
            "ignore_errors = True is not an allowed",
            id="ignore_errors",
        ),
        pytest.param(
            ("follow_imports = silent", "follow_imports = silent\ndisallow_untyped_defs = False"),
            "[mypy-tests.est.*] disallow_untyped_defs = False",
            id="a per-module relaxation",
        ),
        pytest.param(
            ("follow_imports = silent", "follow_imports = silent\ndisable_error_code = arg-type"),
            "disable_error_code = arg-type",
            id="a per-module disabled check",
        ),
        pytest.param(
            ("ignore_missing_imports = True", "ignore_missing_imports = True\nignore_errors = True"),
            "sets ignore_errors, which pyproject's override does not",
            id="a relaxation added to a repeated override",
        ),
        pytest.param(
            ("[mypy-voluptuous,voluptuous.*]", "[mypy-voluptuous]"),
            "no [mypy-voluptuous,voluptuous.*]",
            id="an override dropped",
        ),
    ],
)
def test_a_relaxed_tools_configuration_is_caught(change: tuple[str, str], problem: str) -> None:
    text = INI.read_text()
    old, new = change
    assert text.count(old) == 1, old
    found = problems(main_settings(), tools_settings(text.replace(old, new)))
    assert any(problem in line for line in found), found
