"""The developer tools' mypy run (scripts/devtools/mypy.ini) is as strict as the main one (pyproject.toml)."""

from __future__ import annotations

import configparser
from pathlib import Path
import tomllib

ROOT = Path(__file__).parents[2]


def test_the_developer_tools_mypy_run_repeats_the_main_settings_and_overrides() -> None:
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    tools = configparser.ConfigParser()
    tools.read(ROOT / "scripts" / "devtools" / "mypy.ini")
    general = tools["mypy"]
    assert general["python_version"] == main["python_version"]
    assert general.getboolean("strict") is main["strict"] is True
    assert general.getboolean("warn_unreachable") is main["warn_unreachable"]
    assert [code.strip() for code in general["enable_error_code"].split(",")] == main["enable_error_code"]
    assert general.getboolean("explicit_package_bases") is main["explicit_package_bases"]
    for override in main["overrides"]:
        section = tools[f"mypy-{','.join(override['module'])}"]
        for option, value in override.items():
            if option == "module":
                continue
            repeated = section.getboolean(option) if isinstance(value, bool) else section[option]
            assert repeated == value, (override["module"], option)
