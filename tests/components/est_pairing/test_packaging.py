"""Packaging checks hassfest and HACS would make (hassfest cannot run here): manifest, hacs.json,
translations for every key the code uses, icons, services, quality scale."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
import copy
import importlib
from importlib import metadata
import json
from pathlib import Path
import re
import sys
import tomllib
from typing import Any

import grimp
import homeassistant
from packaging.requirements import Requirement
import pytest
import voluptuous as vol
import yaml

from custom_components.est_pairing import PLATFORMS, const
from custom_components.est_pairing.est.limits import MAX_SECRET_LENGTH

from . import hassfest_rules as hassfest

ROOT = Path(__file__).parents[3]
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
    hassfest.MANIFEST(MANIFEST)
    assert list(MANIFEST) == hassfest.manifest_key_order(list(MANIFEST))
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


def test_loggers_name_the_loggers_of_the_requirements() -> None:
    """The loggers the requirements (and what they pull in) create, as Home Assistant's debug switch needs."""
    seen: set[str] = set()
    wanted = [Requirement(r).name for r in MANIFEST["requirements"]]
    loggers: set[str] = set()
    while wanted:
        name = _canonical(wanted.pop())
        if name in seen:
            continue
        seen.add(name)
        distribution = metadata.distribution(name)
        for line in distribution.requires or ():
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted.append(requirement.name)
        for file in distribution.files or ():
            if file.suffix == ".py":
                loggers |= _loggers_in(file.read_text(), file.parts[0])
    assert sorted(MANIFEST["loggers"]) == sorted(loggers)


def _loggers_in(source: str, package: str) -> set[str]:
    """Top-level names of the loggers a module creates: getLogger("name") or getLogger(__name__)."""
    names = re.findall(r"getLogger\(\s*(?:__name__|[\'\"]([\w.]+)[\'\"])\s*\)", source)
    return {(name or package).split(".")[0] for name in names}


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
    assert "issues.listener_names.title" in keys
    assert "exceptions.port_unavailable.message" in keys
    assert "entity.sensor.qr_payload.name" in keys
    assert {"config.step.exchange.title", "config.progress.exchange"} <= keys


def test_translations_pass_hassfests_schema() -> None:
    hassfest.TRANSLATIONS(TRANSLATIONS)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            document = document.setdefault(key, {})
        document[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            document = document[key]
        del document[last]

    return change


@pytest.mark.parametrize(
    "change",
    [
        _set("issues.listener_names.description", "An issue with a fix flow and a description."),
        _drop("issues.ca_expiring.description"),
        _set("issues.port_unavailable.fix_flow", {"step": {"confirm": {"title": "Fix"}}}),
        _set("config.title", "EST Appliance Pairing"),
        _set("unknown_section", {"a": "b"}),
        _set("config.step.user.data_description.no_such_field", "Described but not asked."),
        _set("config.error.port_in_use", " Leading space."),
        _set("config.error.port_in_use", "See https://example.com/help."),
        _set("config.error.port_in_use", "Port '{port}' is in use."),
        _set("config.error.port_in_use", "Port {0} is in use."),
        _set("config.error.port_in_use", "Port <b>in use</b>."),
        _set("config.error.port_in_use", "[%key:common::config_flow::error::unknown%]"),
        _set("entity.sensor.Certificate_Expiry", {"name": "Upper case key"}),
        _set("entity.sensor.certificate_status.state.valid", "Valid for {days} days"),
        _drop("services.export_ca.description"),
        _drop("services.preregister_appliance.fields.pin.description"),
        _set("config_subentries.appliance.entry_type", None),
    ],
)
def test_the_translation_schema_refuses_what_hassfest_refuses(
    change: Callable[[dict[str, Any]], None],
) -> None:
    document = copy.deepcopy(TRANSLATIONS)
    change(document)
    with pytest.raises(vol.Invalid):
        hassfest.TRANSLATIONS(document)


def test_each_issue_is_explained_or_fixed_as_it_is_raised() -> None:
    """A fixable issue's words live in its fix flow (the dialog it opens), the others' in a description."""
    issues = {value for name, value in vars(const).items() if name.startswith("ISSUE_")}
    fixable = _fixable_issues()
    assert fixable == {const.ISSUE_LISTENER_NAMES}
    assert set(TRANSLATIONS["issues"]) == issues
    for issue in issues:
        translation = TRANSLATIONS["issues"][issue]
        if issue in fixable:
            assert "description" not in translation, issue
            assert translation["fix_flow"]["step"]["confirm"]["description"], issue
        else:
            assert translation["description"], issue


def test_icons_cover_services_and_entities() -> None:
    icons = json.loads((INTEGRATION / "icons.json").read_text())
    hassfest.ICONS(icons)
    services = _services()
    assert set(icons.get("services", {})) == set(services)
    for platform, keys in TRANSLATIONS.get("entity", {}).items():
        assert set(keys) <= set(icons.get("entity", {}).get(platform, {})), platform


def test_services_yaml_and_translations() -> None:
    """Every action the code registers is described, and every field has a translated name and description."""
    services = hassfest.SERVICES(_services())
    assert set(services) == set(registered_services())
    assert set(TRANSLATIONS["services"]) == set(services)
    for service, spec in services.items():
        text = TRANSLATIONS["services"][service]
        fields = (spec or {}).get("fields", {})
        assert set(text.get("fields", {})) == set(fields), service
        for field, field_spec in fields.items():
            assert text["fields"][field]["name"], f"{service}.{field}"
            assert text["fields"][field]["description"], f"{service}.{field}"
            select = field_spec.get("selector", {}).get("select") or {}
            if "translation_key" in select:
                assert _lookup(f"selector.{select['translation_key']}"), f"{service}.{field}"


def test_the_pin_limits_an_action_states_are_the_ones_it_enforces() -> None:
    """Actions take description placeholders only from Home Assistant 2025.11: the text states the limits."""
    description = TRANSLATIONS["services"]["preregister_appliance"]["fields"]["pin"]["description"]
    assert f"({const.MIN_PIN_LENGTH} to {MAX_SECRET_LENGTH} characters)" in description


def registered_services() -> Iterator[str]:
    """Actions registered with hass.services.async_register or async_register_admin_service."""
    tree = ast.parse((INTEGRATION / "services.py").read_text())
    names = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            arguments = [a.id for a in node.args if isinstance(a, ast.Name) and a.id in names]
            if func in {"async_register", "async_register_admin_service"} and arguments:
                yield str(names[arguments[0]])


def test_quality_scale_rules_are_done_or_exempt_with_a_reason() -> None:
    rules = hassfest.QUALITY_SCALE(yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text()))["rules"]
    assert sorted(rules) == sorted(hassfest.ALL_RULES)
    for rule, value in rules.items():
        assert hassfest.status(value) in {"done", "exempt"}, rule


def test_dependency_transparency_names_every_requirement() -> None:
    """The rule's comment is where a reviewer looks for what the integration depends on."""
    rules = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())["rules"]
    comment = rules["dependency-transparency"]["comment"]
    for requirement in MANIFEST["requirements"]:
        assert Requirement(requirement).name in comment, requirement


def _rules_done() -> set[str]:
    rules = yaml.safe_load((INTEGRATION / "quality_scale.yaml").read_text())["rules"]
    return {rule for rule, value in rules.items() if hassfest.status(value) == "done"}


@pytest.mark.parametrize("rule", sorted(hassfest.RULE_CHECKS))
def test_a_rule_marked_done_passes_cores_check(rule: str) -> None:
    """And one marked exempt fails it: a rule the integration meets is marked done, not exempt."""
    done = _rules_done()
    problems = hassfest.RULE_CHECKS[rule](hassfest.Integration(INTEGRATION, MANIFEST), done)
    if rule in done:
        assert problems == []
    else:
        assert problems != [], f"{rule} is marked exempt, but the integration meets it"


def test_each_rule_check_refuses_an_integration_without_it(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text(
        "async def async_setup_entry(hass, entry: ConfigEntry):\n"
        "    hass.services.async_register('demo', 'act', print)\n"
    )
    (tmp_path / "config_flow.py").write_text(
        "class Flow(ConfigFlow):\n"
        "    def async_get_options_flow(config_entry: ConfigEntry):\n"
        "        return None\n"
    )
    (tmp_path / "sensor.py").write_text("async def async_setup_entry(hass, entry, add_entities):\n    pass\n")
    integration = hassfest.Integration(tmp_path, {"domain": "demo"})
    for rule, check in hassfest.RULE_CHECKS.items():
        assert check(integration, {"strict-typing"}), rule
    assert hassfest.check_runtime_data(integration, {"strict-typing"}) == [
        "async_setup_entry does not set entry.runtime_data",
        "__init__.async_setup_entry does not take the typed config entry",
        "sensor.async_setup_entry does not take the typed config entry",
        "Flow.async_get_options_flow does not take the typed config entry",
    ]


# What Home Assistant imports of an integration besides the package and its entity PLATFORMS: the
# modules it looks for by name. A module of that kind added to the integration is added here.
INTEGRATION_PLATFORMS = ("config_flow", "diagnostics", "repairs")
# What the integration runs as a process of its own (``python -I FILE``), by the module that starts
# it: shipped like the rest, and able to run without the package around it (see the test below).
PROCESS_SCRIPTS = {"custom_components.est_pairing.est.srp_worker": "custom_components.est_pairing.est.srp6a"}


def home_assistant_imports(graph: grimp.ImportGraph) -> set[str]:
    """The integration's modules Home Assistant runs: its entry points, what they import, their packages."""
    package = "custom_components.est_pairing"
    entry_points = {package} | {
        f"{package}.{name}" for name in (*map(str, PLATFORMS), *INTEGRATION_PLATFORMS)
    }
    assert entry_points <= graph.modules
    reached = set(entry_points)
    for module in entry_points:
        reached |= graph.find_upstream_modules(module)
    return reached | {parent for module in reached for parent in _packages_of(module)}


def _packages_of(module: str) -> Iterator[str]:
    while "." in module:
        module = module.rpartition(".")[0]
        yield module


def test_a_hacs_install_holds_only_what_home_assistant_imports() -> None:
    """Every module under custom_components/ is imported at run time; none of them reaches est_tools,
    which HACS does not install (lint-imports' contracts say the same of every import, this of the
    ones Home Assistant runs)."""
    graph = grimp.build_graph(
        "custom_components", "est_tools", exclude_type_checking_imports=True, cache_dir=None
    )
    reached = home_assistant_imports(graph)
    for starter, script in PROCESS_SCRIPTS.items():
        if starter in reached:  # it starts the script: Home Assistant runs that too
            reached |= {script} | graph.find_upstream_modules(script)
    shipped = {"custom_components.est_pairing"} | graph.find_descendants("custom_components.est_pairing")
    assert sorted(shipped - reached) == []
    assert sorted(module for module in reached if module.split(".")[0] != "custom_components") == []
    assert {"custom_components.est_pairing.est", "custom_components.est_pairing.est.wire"} <= reached


@pytest.mark.parametrize("script", sorted(PROCESS_SCRIPTS.values()))
def test_a_script_run_as_a_process_needs_only_the_standard_library(script: str) -> None:
    """It runs with ``python -I``: not the integration's package, not Home Assistant, not its own directory.

    Whatever it imports at its top must be the standard library's (it imports ``srp`` once its parent
    told it where to find it); the module that starts it names this very file.
    """
    path = ROOT / (script.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    top_level: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{script} imports relative to its package (line {node.lineno})"
            top_level.add((node.module or "").split(".")[0])
    assert sorted(top_level - sys.stdlib_module_names - {"__future__"}) == []
    starter = next(module for module, started in PROCESS_SCRIPTS.items() if started == script)
    assert path == importlib.import_module(starter).SCRIPT


def test_strict_typing_is_mypy_strict_over_the_integration() -> None:
    """What core reads from .strict-typing: here the project's mypy configuration."""
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True
    assert "custom_components" in mypy["files"]


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


def _classes() -> Iterator[ast.ClassDef]:
    for path in INTEGRATION.glob("*.py"):
        yield from (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef))


def _fixable_issues() -> set[str]:
    """Issues a repair flow fixes (its ISSUE_ID)."""
    return {
        _class_constant(node, "ISSUE_ID")
        for node in _classes()
        if any(getattr(base, "id", getattr(base, "attr", "")) in REPAIR_FLOWS for base in node.bases)
    }


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
            if func == "async_show_progress":
                yield f"{section}.step.{_constant(kwargs.get('step_id'))}.title"
                yield f"{section}.progress.{_constant(kwargs.get('progress_action'))}"
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
    func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
    key = _constant(kwargs.get("translation_key"))
    if func == "raise_issue" and len(node.args) > 1:  # the hub's one way to raise a repair issue
        key = _constant(node.args[1])
    if not key:
        return
    if func.endswith(("Error", "Exception", "NotReady")):
        yield f"exceptions.{key}.message"
    elif func in {"async_create_issue", "raise_issue"}:
        yield f"issues.{key}.title"
    elif func.endswith("Description"):
        yield f"entity.{module}.{key}.name"
    elif func.endswith("SelectorConfig"):
        yield f"selector.{key}.options"


def _constant(node: ast.AST | None) -> str | None:
    """A string literal, or a name const.py gives a string."""
    if isinstance(node, ast.Name):
        node = ast.Constant(getattr(const, node.id, None))
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
