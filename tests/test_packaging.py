"""Packaging checks hassfest and HACS would make (hassfest cannot run here): manifest, hacs.json,
translations for every key the code uses, icons, services, quality scale."""

from __future__ import annotations

import ast
from collections.abc import Iterator
import json
from pathlib import Path
import re
from typing import Any

import homeassistant
import pytest
import yaml

from custom_components.est_pairing import const

ROOT = Path(__file__).parents[1]
INTEGRATION = ROOT / "custom_components" / "est_pairing"
MANIFEST = json.loads((INTEGRATION / "manifest.json").read_text())
TRANSLATIONS = json.loads((INTEGRATION / "translations" / "en.json").read_text())

HACS_KEYS = {
    "name",
    "content_in_root",
    "zip_release",
    "filename",
    "hide_default_branch",
    "country",
    "homeassistant",
    "persistent_directory",
    "hacs",
}
FLOW_SECTIONS = {"ConfigFlow": "config", "OptionsFlow": "options", "OptionsFlowWithReload": "options"}
REPAIR_FLOWS = {"RepairsFlow", "ConfirmRepairFlow"}


def test_manifest_keys_and_order() -> None:
    keys = list(MANIFEST)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])
    assert MANIFEST["domain"] == INTEGRATION.name == "est_pairing"
    assert MANIFEST["name"] == "EST Appliance Pairing"
    assert MANIFEST["config_flow"] is True
    assert MANIFEST["dependencies"] == ["network", "zeroconf"]
    assert MANIFEST["integration_type"] == "hub"
    assert MANIFEST["iot_class"] == "local_push"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MANIFEST["version"])
    for key in ("codeowners", "documentation", "issue_tracker", "loggers", "requirements"):
        assert MANIFEST[key], key
    assert "zeroconf" not in MANIFEST, "Home Assistant would discover its own EST server"


def test_manifest_requires_nothing_home_assistant_already_pins() -> None:
    constraints = Path(homeassistant.__file__).with_name("package_constraints.txt").read_text()
    pinned = {
        _canonical(re.split(r"[<>=!~; ]", line, maxsplit=1)[0])
        for line in constraints.splitlines()
        if line and not line.startswith("#")
    }
    for requirement in MANIFEST["requirements"]:
        name = _canonical(re.split(r"[<>=!~; \[]", requirement, maxsplit=1)[0])
        assert name not in pinned, f"{name} is pinned by Home Assistant; do not require it"
        assert "==" in requirement, f"pin {requirement} exactly, as Home Assistant expects"


def test_requirements_match_the_test_environment() -> None:
    test_requirements = (ROOT / "requirements_test.txt").read_text()
    for requirement in MANIFEST["requirements"]:
        assert requirement in test_requirements


def test_hacs_json() -> None:
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert set(hacs) <= HACS_KEYS
    assert hacs["name"] == "EST Appliance Pairing"
    assert hacs["homeassistant"] == "2025.4.0"
    assert (ROOT / "LICENSE").is_file()
    assert (ROOT / "README.md").is_file()
    assert (INTEGRATION / "brand" / "icon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_translation_key_the_code_uses_exists() -> None:
    missing = [key for key in sorted(set(used_translation_keys())) if not _lookup(key)]
    assert missing == []


def test_translation_scanner_finds_the_keys_it_should() -> None:
    keys = set(used_translation_keys())
    assert "config.step.user.title" in keys
    assert "config.abort.already_configured" in keys


def test_icons_cover_services_and_entities() -> None:
    icons = json.loads((INTEGRATION / "icons.json").read_text())
    services = _services()
    assert set(icons.get("services", {})) == set(services)
    for platform, keys in TRANSLATIONS.get("entity", {}).items():
        assert set(keys) <= set(icons.get("entity", {}).get(platform, {})), platform


def test_services_are_translated() -> None:
    for service, spec in _services().items():
        text = TRANSLATIONS["services"][service]
        assert text["name"]
        assert text["description"]
        for field in (spec or {}).get("fields", {}):
            assert text["fields"][field]["name"], f"{service}.{field}"


def test_quality_scale_rules_are_done_or_exempt_with_a_reason() -> None:
    rules = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())["rules"]
    for rule, status in rules.items():
        if isinstance(status, dict):
            assert status["status"] in {"done", "exempt"}, rule
            if status["status"] == "exempt":
                assert status.get("comment"), f"{rule} is exempt without a reason"
        else:
            assert status == "done", rule


# --- the scanner ------------------------------------------------------------------------------------


def used_translation_keys() -> Iterator[str]:
    """Dotted en.json keys the integration's code refers to."""
    for path in INTEGRATION.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                section = _flow_section(node)
                if section:
                    yield from _flow_keys(node, section)
            if isinstance(node, ast.Call):
                yield from _call_keys(node, path.stem)


def _flow_section(node: ast.ClassDef) -> str | None:
    for base in node.bases:
        name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
        if name in FLOW_SECTIONS:
            return FLOW_SECTIONS[name]
        if name == "ConfigSubentryFlow":
            subentry = _class_constant(node, "SUBENTRY_TYPE")
            return f"config_subentries.{subentry}"
        if name in REPAIR_FLOWS:
            return f"issues.{_class_constant(node, 'ISSUE_ID')}.fix_flow"
    return None


def _class_constant(node: ast.ClassDef, name: str) -> str:
    for item in node.body:
        if isinstance(item, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in item.targets
        ):
            if isinstance(item.value, ast.Constant):
                return str(item.value.value)
            if isinstance(item.value, ast.Name):  # a name from const.py
                return str(getattr(const, item.value.id))
    raise AssertionError(f"{node.name} needs a {name} constant for the translation check")


def _flow_keys(node: ast.ClassDef, section: str) -> Iterator[str]:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call):
            func = getattr(inner.func, "attr", "")
            kwargs = {k.arg: k.value for k in inner.keywords}
            if func in {"async_show_form", "async_show_menu"}:
                step = _constant(kwargs.get("step_id"))
                if step:
                    yield f"{section}.step.{step}.title"
                for option in _constants(kwargs.get("menu_options")):
                    yield f"{section}.step.{step}.menu_options.{option}"
            if func in {"async_abort", "async_update_reload_and_abort"}:
                reason = _constant(kwargs.get("reason") or (inner.args[0] if inner.args else None))
                if reason:
                    yield f"{section}.abort.{reason}"
            if func == "_abort_if_unique_id_configured":
                yield f"{section}.abort.already_configured"
        if isinstance(inner, ast.Assign) and isinstance(inner.value, ast.Constant):
            for target in inner.targets:
                if isinstance(target, ast.Subscript) and getattr(target.value, "id", "") == "errors":
                    yield f"{section}.error.{inner.value.value!s}"


def _call_keys(node: ast.Call, module: str) -> Iterator[str]:
    kwargs = {k.arg: k.value for k in node.keywords}
    key = _constant(kwargs.get("translation_key"))
    if not key:
        return
    func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
    if func.endswith(("Error", "Exception")):
        yield f"exceptions.{key}.message"
    elif func == "async_create_issue":
        yield f"issues.{key}.title"
    elif func.endswith("EntityDescription"):
        yield f"entity.{module}.{key}.name"


def _constant(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _constants(node: ast.AST | None) -> list[str]:
    if isinstance(node, ast.List | ast.Tuple):
        return [c for c in map(_constant, node.elts) if c]
    return []


def _lookup(dotted: str) -> Any:
    value: Any = TRANSLATIONS
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _services() -> dict[str, Any]:
    path = INTEGRATION / "services.yaml"
    return yaml.safe_load(path.read_text()) or {} if path.exists() else {}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("path", sorted(INTEGRATION.glob("translations/*.json")))
def test_translation_files_are_valid_json(path: Path) -> None:
    assert json.loads(path.read_text())


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_translations_parse_as_icu_messages() -> None:
    """The frontend formats strings as ICU messages: '<x>' is a tag and breaks the whole string."""
    for text in _strings(TRANSLATIONS):
        assert not re.search(r"<[A-Za-z/]", text), text
        assert text.count("{") == text.count("}"), text


def test_flow_titles_have_no_placeholders() -> None:
    """The frontend does not give menu titles the step's placeholders: keep every title plain."""

    def titles(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield from titles(item, f"{path}.{key}")
        elif path.endswith(".title") and ".step." in path:
            yield path, value

    for path, title in titles(TRANSLATIONS):
        assert "{" not in title, path
