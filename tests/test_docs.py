"""The user docs stay true to the repository: their links and pictures exist, the commands they name
exist, and the options they list for the two command lines are the options those command lines take."""

from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

from est_tools.appliance import cli as appliance_cli
from est_tools.standalone import cli as standalone_cli

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
STANDALONE = ROOT / "docs" / "standalone.md"
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target)
SCRIPT = re.compile(r"`(scripts/[\w-]+)")
OPTION = re.compile(r"--[a-z][a-z-]*")


def _section(text: str, heading: str) -> str:
    """From ``heading`` to the next heading of the same or a higher level (code blocks left out)."""
    text = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    start = text.index(heading) + len(heading)
    level = len(heading.split(" ", 1)[0])
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, start)
    return text[start : end.start() if end else len(text)]


def _table_rows(text: str) -> list[list[str]]:
    rows = [
        [cell.strip() for cell in line.strip(" |").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    return [cells for cells in rows if not set(cells[0]) <= {"-", " "}]


def _help_options(
    capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], *command: str
) -> set[str]:
    """The long options a command line's ``--help`` lists (``--help`` itself left out)."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return set(OPTION.findall(capsys.readouterr().out)) - {"--help"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_links_and_pictures_point_at_files_that_exist(doc: Path) -> None:
    targets = [t for t in LINK.findall(doc.read_text()) if not re.match(r"[a-z]+:", t)]
    missing = [t for t in targets if not (doc.parent / t).exists()]
    assert missing == [], f"{doc.name} links to files that do not exist"


def test_the_readme_shows_the_owners_flow_with_its_pictures() -> None:
    """Adding the hub, its QR code, the appliance under Discovered, the dialogs, its device, revoked."""
    pictures = set(re.findall(r"!\[[^\]]*\]\(docs/images/([^)]+)\)", (ROOT / "README.md").read_text()))
    flow = ["02-add-integration", "11-hub-qr-code", "04-discovered", "05-confirm", "06-waiting-for-proof"]
    flow += ["06-wrong-pin", "07-approved", "09-device", "10-revoked"]
    assert {f"{name}.png" for name in flow} <= pictures


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_the_scripts_the_docs_name_exist(doc: Path) -> None:
    named = set(SCRIPT.findall(doc.read_text()))
    assert sorted(s for s in named if not (ROOT / s).exists()) == []


def test_serve_options_are_the_documented_ones(capsys: pytest.CaptureFixture[str]) -> None:
    documented = {
        option
        for cells in _table_rows(_section(STANDALONE.read_text(), "### `serve`"))
        for option in OPTION.findall(cells[0])
    }
    assert documented == _help_options(capsys, standalone_cli.main, "serve")


@pytest.mark.parametrize("command", ["approve", "reject", "revoke", "list"])
def test_the_other_commands_options_are_the_documented_ones(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    section = _section(STANDALONE.read_text(), "### `approve`, `reject`, `revoke`, `list`")
    (row,) = [cells for cells in _table_rows(section) if cells[0].startswith(f"`{command}")]
    assert set(OPTION.findall(row[1])) == _help_options(capsys, standalone_cli.main, command)


def test_the_appliance_options_are_the_documented_ones(capsys: pytest.CaptureFixture[str]) -> None:
    section = _section(STANDALONE.read_text(), "## Simulated appliance")
    documented = {option for cells in _table_rows(section) for option in OPTION.findall(cells[0])}
    # --isolated is scripts/appliance's own (it enters the namespace), not the Python command line's.
    assert documented == _help_options(capsys, appliance_cli.main) | {"--isolated"}


# The commands whose options the tests above do not read from a table: the Python module behind each
# (its --help lists them), or for a shell script of its own, the script's text.
HELPED = {
    "scripts/develop": "scripts.devtools.develop",
    "scripts/bench": "scripts.devtools.bench",
    "scripts/abuse": "tests.est.abuse",
}
COMMAND = re.compile(r"`(scripts/[\w-]+)([^`\n]*)`|^(scripts/[\w-]+)([^#\n]*)", re.MULTILINE)


def _documented_options() -> dict[str, set[str]]:
    """The options the docs give each script, in inline code and in code blocks' command lines."""
    options: dict[str, set[str]] = {}
    for doc in DOCS:
        for match in COMMAND.finditer(doc.read_text()):
            script, arguments = (match[1], match[2]) if match[1] else (match[3], match[4])
            found = re.findall(r"(?<![\w-])--[a-z][a-z-]*", arguments)
            options.setdefault(script, set()).update(found)
    return options


def _accepted_options(script: str) -> set[str]:
    if (module := HELPED.get(script)) is None:
        return set(OPTION.findall((ROOT / script).read_text())) | {"--help"}
    shown = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    listed = re.findall(r"^ {2}(?:-\w, )?(--[a-z][a-z-]*)", shown.stdout, re.MULTILINE)
    return set(listed)


@pytest.mark.parametrize("script", sorted({*HELPED, "scripts/tls-audit"}))
def test_the_options_the_docs_give_a_script_are_ones_it_takes(script: str) -> None:
    documented = _documented_options().get(script, set())
    assert documented, f"the docs give {script} no option: nothing checked"
    assert sorted(documented - _accepted_options(script)) == []


def test_the_develop_options_are_the_documented_ones() -> None:
    section = _section((ROOT / "docs" / "development.md").read_text(), "## Set-up")
    documented = {option for cells in _table_rows(section) for option in OPTION.findall(cells[0])}
    assert documented == _accepted_options("scripts/develop") - {"--help"}


def test_serve_defaults_are_the_documented_ones() -> None:
    """What ``serve`` does when an option is left out is what the table's default column says."""
    rows = _table_rows(_section(STANDALONE.read_text(), "### `serve`"))
    defaults = {OPTION.findall(cells[0])[0]: cells[1].strip("`") for cells in rows[1:]}
    args = standalone_cli.parser().parse_args(["serve", "--data-dir", "unused"])
    config = standalone_cli.service_config(args)
    assert defaults["--data-dir"] == "required"
    assert config.bind_host == defaults["--host"]
    assert config.port == int(defaults["--port"])
    assert config.validity_days == int(defaults["--validity-days"])
    assert config.ca_name == defaults["--name"]
    assert list(config.labels) == [defaults["--label"]]
    assert args.loop == defaults["--loop"]
    assert (defaults["--auto-approve"], config.auto_approve) == ("off", False)
