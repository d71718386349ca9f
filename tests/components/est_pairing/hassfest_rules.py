"""Home Assistant's hassfest rules, restated for one custom integration (hassfest needs a core checkout).

What hassfest validates for a custom integration: manifest.json, translations/en.json, icons.json and
services.yaml against schemas; and what core's quality-scale checks verify for each rule an
integration marks done. Each schema here refuses unknown keys, as hassfest's do; the sections are the
ones a custom integration may use.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
import re
import string
from typing import Any

from awesomeversion import AwesomeVersion, AwesomeVersionStrategy
from awesomeversion.exceptions import AwesomeVersionException
from homeassistant.const import Platform
from homeassistant.helpers import config_validation as cv, selector
import voluptuous as vol

# --- translations ------------------------------------------------------------------------------------

# Lower case letters, digits, '-' and '_', not at either end and never two in a row.
_TRANSLATION_KEY = re.compile(r"[a-z0-9]([a-z0-9_-]*[a-z0-9])?")
_DOUBLE_SEPARATOR = re.compile(r"[_-]{2}")
_QUOTED_PLACEHOLDER = re.compile(r"'\{\w+\}'")
_URL = re.compile(
    r"((ftp|ftps|scp|https?|mqtts?|socket|socks5)://|www\.)[a-z0-9]+([-.][a-z0-9]+)*\.[a-z]{2,5}",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"\[%key:")


def translation_key(value: Any) -> str:
    """A key the frontend looks up: entity translation keys, states, service and field names."""
    if not isinstance(value, str) or not _TRANSLATION_KEY.fullmatch(value) or _DOUBLE_SEPARATOR.search(value):
        raise vol.Invalid(f"invalid translation key {value!r}")
    return value


def _text(value: Any, *, placeholders: bool = True) -> str:
    text = cv.string_with_no_html(value)
    if _QUOTED_PLACEHOLDER.search(text):
        raise vol.Invalid("a placeholder inside single quotes")
    for _literal, field, _spec, _conversion in string.Formatter().parse(text):
        if field is not None and field != "":
            if not placeholders:
                raise vol.Invalid("no placeholders here")
            if not field.isidentifier():
                raise vol.Invalid(f"placeholder {{{field}}} is not an identifier")
    if text != text.strip():
        raise vol.Invalid("leading or trailing spaces")
    if _URL.search(text):
        raise vol.Invalid("a URL: pass it as a placeholder")
    if _REFERENCE.search(text):
        raise vol.Invalid("a [%key:...] reference: only core's strings.json is built into full text")
    return text


def text(value: Any) -> str:
    """A translated string."""
    return _text(value)


def plain_text(value: Any) -> str:
    """A translated string that takes no placeholders (entity states, units)."""
    return _text(value, placeholders=False)


def _data_descriptions_name_fields(value: dict[str, Any]) -> dict[str, Any]:
    for step_id, step in value["step"].items():
        for key in step.get("data_description", {}):
            if key not in step.get("data", {}):
                raise vol.Invalid(f"step {step_id}: data_description {key} is not in data")
    return value


def data_entry_flow(*, subentry: bool = False) -> Callable[[Any], Any]:
    """Config, options, subentry and repair flows: steps, errors, aborts."""
    texts = {str: text}
    schema: dict[Any, Any] = {
        vol.Optional("flow_title"): text,
        vol.Required("step"): {
            str: {
                vol.Optional("title"): text,
                vol.Optional("description"): text,
                vol.Optional("data"): texts,
                vol.Optional("data_description"): texts,
                vol.Optional("menu_options"): texts,
                vol.Optional("menu_option_descriptions"): texts,
                vol.Optional("submit"): text,
                vol.Optional("sections"): {
                    str: {
                        vol.Optional("name"): text,
                        vol.Optional("description"): text,
                        vol.Optional("data"): texts,
                        vol.Optional("data_description"): texts,
                    }
                },
            }
        },
        vol.Optional("error"): texts,
        vol.Optional("abort"): texts,
        vol.Optional("progress"): texts,
        vol.Optional("create_entry"): texts,
    }
    if subentry:
        schema[vol.Required("entry_type")] = text
        schema[vol.Required("initiate_flow")] = {vol.Required("user"): text, str: text}
    else:
        schema[vol.Optional("initiate_flow")] = {vol.Required("user"): text}
    validator: Callable[[Any], Any] = vol.All(vol.Schema(schema), _data_descriptions_name_fields)
    return validator


# An issue is either explained (description) or fixed (fix_flow, whose steps explain it), never both.
ISSUE = vol.All(
    cv.has_at_least_one_key("description", "fix_flow"),
    vol.Schema(
        {
            vol.Required("title"): text,
            vol.Exclusive("description", "fixable"): text,
            vol.Exclusive("fix_flow", "fixable"): data_entry_flow(),
        }
    ),
)

_STATES = cv.schema_with_slug_keys(plain_text, slug_validator=translation_key)
_FIELDS = cv.schema_with_slug_keys(
    {vol.Required("name"): str, vol.Required("description"): text, vol.Optional("example"): text},
    slug_validator=translation_key,
)

TRANSLATIONS = vol.Schema(
    {
        vol.Optional("title"): text,
        vol.Optional("config"): data_entry_flow(),  # "config.title" is gone: the manifest names it
        vol.Optional("config_subentries"): cv.schema_with_slug_keys(data_entry_flow(subentry=True)),
        vol.Optional("options"): data_entry_flow(),
        vol.Optional("selector"): cv.schema_with_slug_keys(
            {
                vol.Optional("options"): cv.schema_with_slug_keys(text, slug_validator=translation_key),
                vol.Optional("choices"): cv.schema_with_slug_keys(text, slug_validator=translation_key),
                vol.Optional("unit_of_measurement"): cv.schema_with_slug_keys(
                    text, slug_validator=translation_key
                ),
                vol.Optional("fields"): _FIELDS,
            }
        ),
        vol.Optional("issues"): {str: ISSUE},
        vol.Optional("device"): cv.schema_with_slug_keys(
            {vol.Optional("name"): text}, slug_validator=translation_key
        ),
        vol.Optional("entity"): cv.schema_with_slug_keys(
            cv.schema_with_slug_keys(
                {
                    vol.Optional("name"): text,
                    vol.Optional("state"): _STATES,
                    vol.Optional("state_attributes"): cv.schema_with_slug_keys(
                        {vol.Optional("name"): plain_text, vol.Optional("state"): _STATES},
                        slug_validator=translation_key,
                    ),
                    vol.Optional("unit_of_measurement"): plain_text,
                },
                slug_validator=translation_key,
            ),
        ),
        vol.Optional("exceptions"): cv.schema_with_slug_keys({vol.Optional("message"): text}),
        vol.Optional("services"): cv.schema_with_slug_keys(
            {
                vol.Required("name"): text,
                vol.Required("description"): text,
                vol.Optional("fields"): _FIELDS,
                vol.Optional("sections"): cv.schema_with_slug_keys(
                    {vol.Required("name"): str, vol.Optional("description"): text},
                    slug_validator=translation_key,
                ),
            },
            slug_validator=translation_key,
        ),
    }
)

# --- icons.json --------------------------------------------------------------------------------------


def icon(value: Any) -> str:
    """A Material Design icon."""
    name = cv.string_with_no_html(value)
    if not name.startswith("mdi:"):
        raise vol.Invalid(f"{name!r} is not mdi:...")
    return name


def _states_differ_from_default(value: dict[str, Any]) -> dict[str, Any]:
    for key, entity in value.items():
        for state, state_icon in entity.get("state", {}).items():
            if state_icon == entity.get("default"):
                raise vol.Invalid(f"{key}.{state} repeats the default icon")
    return value


_ICON_STATES = cv.schema_with_slug_keys(icon, slug_validator=translation_key)
ICONS = vol.Schema(
    {
        vol.Optional("entity"): cv.schema_with_slug_keys(
            vol.All(
                cv.schema_with_slug_keys(
                    {vol.Optional("default"): icon, vol.Optional("state"): _ICON_STATES},
                    slug_validator=translation_key,
                ),
                _states_differ_from_default,
            )
        ),
        vol.Optional("services"): cv.schema_with_slug_keys(
            vol.Any(icon, {vol.Required("service"): icon, vol.Optional("sections"): _ICON_STATES}),
            slug_validator=translation_key,
        ),
    }
)

# --- services.yaml -----------------------------------------------------------------------------------

_SERVICE_FIELD = vol.Schema(
    {
        vol.Optional("name"): str,
        vol.Optional("description"): str,
        vol.Optional("example"): vol.NotIn([None]),
        vol.Optional("default"): vol.NotIn([None]),
        vol.Optional("required"): bool,
        vol.Optional("advanced"): bool,
        vol.Optional("selector"): selector.validate_selector,
    }
)
SERVICES = vol.Schema(
    {
        cv.slug: vol.Any(
            None,
            vol.Schema(
                {
                    vol.Optional("name"): str,
                    vol.Optional("description"): str,
                    vol.Optional("fields"): {str: _SERVICE_FIELD},
                }
            ),
        )
    }
)

# --- manifest.json -----------------------------------------------------------------------------------


def _https(value: str) -> str:
    if not value.startswith("https://"):
        raise vol.Invalid("documentation must be https")
    return value


def _version(value: str) -> str:
    strategies = [
        AwesomeVersionStrategy.CALVER,
        AwesomeVersionStrategy.SEMVER,
        AwesomeVersionStrategy.SIMPLEVER,
        AwesomeVersionStrategy.BUILDVER,
        AwesomeVersionStrategy.PEP440,
    ]
    try:
        AwesomeVersion(value, ensure_strategy=strategies)
    except AwesomeVersionException as err:
        raise vol.Invalid(f"{value!r} is not a version") from err
    return value


MANIFEST = vol.Schema(
    {
        vol.Required("domain"): str,
        vol.Required("name"): str,
        vol.Optional("after_dependencies"): [str],
        vol.Required("codeowners"): [str],
        vol.Optional("config_flow"): bool,
        vol.Optional("dependencies"): [str],
        vol.Optional("dhcp"): list,
        vol.Required("documentation"): vol.All(vol.Url(), _https),
        vol.Optional("homekit"): dict,
        vol.Optional("import_executor"): bool,
        vol.Optional("integration_type"): vol.In(
            ["device", "entity", "hardware", "helper", "hub", "service", "system"]
        ),
        vol.Required("iot_class"): vol.In(
            ["assumed_state", "calculated", "cloud_polling", "cloud_push", "local_polling", "local_push"]
        ),
        vol.Optional("issue_tracker"): vol.Url(),
        vol.Optional("loggers"): [str],
        vol.Optional("mqtt"): [str],
        vol.Optional("requirements"): [str],
        vol.Optional("single_config_entry"): bool,
        vol.Optional("ssdp"): list,
        vol.Optional("usb"): list,
        vol.Optional("bluetooth"): list,
        vol.Required("version"): vol.All(str, _version),  # Home Assistant refuses a custom one without
        vol.Optional("zeroconf"): list,
    }
)


def manifest_key_order(keys: list[str]) -> list[str]:
    """The order hassfest wants: domain, name, then the rest alphabetically."""
    first = {"domain": "0", "name": "1"}
    return sorted(keys, key=lambda key: first.get(key, f"2{key}"))


# --- quality scale -----------------------------------------------------------------------------------

RULES = {
    "bronze": [
        "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
        "config-flow-test-coverage", "dependency-transparency", "docs-actions", "docs-conditions",
        "docs-high-level-description", "docs-installation-instructions", "docs-removal-instructions",
        "docs-triggers", "entity-event-setup", "entity-unique-id", "has-entity-name", "runtime-data",
        "test-before-configure", "test-before-setup", "unique-config-entry",
    ],
    "silver": [
        "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
        "docs-installation-parameters", "entity-unavailable", "integration-owner",
        "log-when-unavailable", "parallel-updates", "reauthentication-flow", "test-coverage",
    ],
    "gold": [
        "devices", "diagnostics", "discovery", "discovery-update-info", "docs-data-update",
        "docs-examples", "docs-known-limitations", "docs-supported-devices", "docs-supported-functions",
        "docs-troubleshooting", "docs-use-cases", "dynamic-devices", "entity-category",
        "entity-device-class", "entity-disabled-by-default", "entity-translations",
        "exception-translations", "icon-translations", "reconfiguration-flow", "repair-issues",
        "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}  # fmt: skip
ALL_RULES = [rule for rules in RULES.values() for rule in rules]


def status(value: str | dict[str, str]) -> str:
    """A rule's status, written alone or with a comment."""
    return value["status"] if isinstance(value, dict) else value


QUALITY_SCALE = vol.Schema(
    {
        vol.Required("rules"): {
            vol.In(ALL_RULES): vol.Any(
                vol.In(["todo", "done"]),
                {vol.Required("status"): vol.In(["todo", "done"]), vol.Optional("comment"): str},
                {vol.Required("status"): "exempt", vol.Required("comment"): str},
            )
        }
    }
)

DISCOVERY_MANIFEST_KEYS = {"bluetooth", "dhcp", "homekit", "mqtt", "ssdp", "usb", "zeroconf"}
DISCOVERY_STEPS = {
    "async_step_bluetooth",
    "async_step_discovery",
    "async_step_dhcp",
    "async_step_hassio",
    "async_step_homekit",
    "async_step_mqtt",
    "async_step_ssdp",
    "async_step_usb",
    "async_step_zeroconf",
}
SETUP_FAILURES = {"ConfigEntryNotReady", "ConfigEntryAuthFailed", "ConfigEntryError"}
TYPED_ENTRY = re.compile(r"[A-Za-z]+ConfigEntry")  # a ConfigEntry[...] alias, not ConfigEntry itself
ENTRY_FUNCTIONS = {
    "__init__": [
        "async_migrate_entry",
        "async_remove_config_entry_device",
        "async_remove_entry",
        "async_setup_entry",
        "async_unload_entry",
    ],
    "diagnostics": ["async_get_config_entry_diagnostics", "async_get_device_diagnostics"],
    **{platform.value: ["async_setup_entry"] for platform in Platform},
}


class Integration:
    """The parsed modules of one integration folder."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    def module(self, name: str) -> ast.Module | None:
        """A top-level module of the integration, parsed, or None."""
        file = self.path / f"{name}.py"
        return ast.parse(file.read_text(), str(file)) if file.is_file() else None

    def platforms(self) -> Iterator[tuple[str, ast.Module]]:
        """Entity platform modules (sensor.py, button.py, ...)."""
        for platform in Platform:
            if (module := self.module(platform.value)) is not None:
                yield platform.value, module

    def all_modules(self) -> Iterator[ast.Module]:
        """Every Python file of the integration."""
        for file in sorted(self.path.rglob("*.py")):
            yield ast.parse(file.read_text(), str(file))


def top_level_function(module: ast.Module | None, name: str) -> ast.AsyncFunctionDef | None:
    """An ``async def`` at the module's top level."""
    for item in module.body if module else ():
        if isinstance(item, ast.AsyncFunctionDef) and item.name == name:
            return item
    return None


def _calls(node: ast.AST | None, method: str) -> bool:
    return node is not None and any(
        isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == method
        for call in ast.walk(node)
    )


def _defines_async(node: ast.AST | None, names: set[str]) -> bool:
    return node is not None and any(
        isinstance(item, ast.AsyncFunctionDef) and item.name in names for item in ast.walk(node)
    )


def _entry_argument_typed(function: ast.FunctionDef | ast.AsyncFunctionDef, position: int) -> bool:
    arguments = function.args.args
    if len(arguments) < position:
        return False
    annotation = arguments[position - 1].annotation
    return isinstance(annotation, ast.Name) and TYPED_ENTRY.fullmatch(annotation.id) is not None


def check_config_flow(integration: Integration, done: set[str]) -> list[str]:
    """config-flow: the manifest says so and config_flow.py exists."""
    if not integration.manifest.get("config_flow"):
        return ["manifest.json does not set config_flow"]
    return [] if integration.module("config_flow") else ["no config_flow.py"]


def check_runtime_data(integration: Integration, done: set[str]) -> list[str]:
    """runtime-data: async_setup_entry stores entry.runtime_data; typed entries with strict-typing."""
    setup = top_level_function(integration.module("__init__"), "async_setup_entry")
    if setup is None or len(setup.args.args) != 2:  # (hass, entry)
        return ["no async_setup_entry(hass, entry) in __init__.py"]
    entry = setup.args.args[1].arg
    errors = []
    if not any(
        isinstance(node, ast.Attribute)
        and node.attr == "runtime_data"
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == entry
        for node in ast.walk(setup)
    ):
        errors.append("async_setup_entry does not set entry.runtime_data")
    if "strict-typing" not in done:
        return errors
    for module_name, functions in ENTRY_FUNCTIONS.items():
        module = integration.module(module_name)
        for name in functions:
            function = top_level_function(module, name)
            if function is not None and not _entry_argument_typed(function, 2):
                errors.append(f"{module_name}.{name} does not take the typed config entry")
    flow = integration.module("config_flow")
    errors.extend(
        f"{node.name}.async_get_options_flow does not take the typed config entry"
        for node in (flow.body if flow else ())
        if isinstance(node, ast.ClassDef)
        for item in node.body
        if isinstance(item, ast.FunctionDef)
        and item.name == "async_get_options_flow"
        and not _entry_argument_typed(item, 1)
    )
    return errors


def check_test_before_setup(integration: Integration, done: set[str]) -> list[str]:
    """test-before-setup: setup refreshes first, or something raises ConfigEntryNotReady (or the like)."""
    setup = top_level_function(integration.module("__init__"), "async_setup_entry")
    if _calls(setup, "async_config_entry_first_refresh"):
        return []

    def raised(node: ast.expr | None) -> str | None:
        while isinstance(node, ast.Call | ast.Attribute):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node.id if isinstance(node, ast.Name) else None

    for module in integration.all_modules():
        if any(isinstance(n, ast.Raise) and raised(n.exc) in SETUP_FAILURES for n in ast.walk(module)):
            return []
    return [f"nothing raises one of {sorted(SETUP_FAILURES)}"]


def check_unique_config_entry(integration: Integration, done: set[str]) -> list[str]:
    """unique-config-entry: one entry per device or service."""
    flow = integration.module("config_flow")
    if integration.manifest.get("single_config_entry") or _calls(flow, "_async_abort_entries_match"):
        return []
    if _calls(flow, "async_set_unique_id") and _calls(flow, "_abort_if_unique_id_configured"):
        return []
    return ["the config flow does not prevent a second entry"]


def check_config_entry_unloading(integration: Integration, done: set[str]) -> list[str]:
    """config-entry-unloading: async_unload_entry in __init__.py."""
    if top_level_function(integration.module("__init__"), "async_unload_entry"):
        return []
    return ["no async_unload_entry in __init__.py"]


def check_parallel_updates(integration: Integration, done: set[str]) -> list[str]:
    """parallel-updates: every entity platform sets PARALLEL_UPDATES."""
    return [
        f"{name}.py does not set PARALLEL_UPDATES"
        for name, module in integration.platforms()
        if not any(
            isinstance(item, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "PARALLEL_UPDATES" for t in item.targets)
            for item in module.body
        )
    ]


def check_reauthentication_flow(integration: Integration, done: set[str]) -> list[str]:
    """reauthentication-flow: async_step_reauth."""
    if _defines_async(integration.module("config_flow"), {"async_step_reauth"}):
        return []
    return ["no async_step_reauth"]


def check_reconfiguration_flow(integration: Integration, done: set[str]) -> list[str]:
    """reconfiguration-flow: async_step_reconfigure."""
    if _defines_async(integration.module("config_flow"), {"async_step_reconfigure"}):
        return []
    return ["no async_step_reconfigure"]


def check_diagnostics(integration: Integration, done: set[str]) -> list[str]:
    """diagnostics: diagnostics.py with config entry or device diagnostics."""
    functions = {"async_get_config_entry_diagnostics", "async_get_device_diagnostics"}
    return [] if _defines_async(integration.module("diagnostics"), functions) else ["no diagnostics"]


def check_discovery(integration: Integration, done: set[str]) -> list[str]:
    """discovery: a discovery matcher in the manifest, or a discovery step Home Assistant calls."""
    if DISCOVERY_MANIFEST_KEYS & set(integration.manifest):
        return []
    if _defines_async(integration.module("config_flow"), DISCOVERY_STEPS):
        return []
    return [f"none of {sorted(DISCOVERY_MANIFEST_KEYS)} in the manifest, none of the discovery steps"]


def check_action_setup(integration: Integration, done: set[str]) -> list[str]:
    """action-setup: actions are registered in async_setup, not async_setup_entry."""
    modules = [("__init__", integration.module("__init__")), *integration.platforms()]
    registrations = {"async_register", "register", "async_register_entity_service"}
    return [
        f"{name}.async_setup_entry registers actions"
        for name, module in modules
        if any(_calls(top_level_function(module, "async_setup_entry"), r) for r in registrations)
    ]


RULE_CHECKS: dict[str, Callable[[Integration, set[str]], list[str]]] = {
    "action-setup": check_action_setup,
    "config-entry-unloading": check_config_entry_unloading,
    "config-flow": check_config_flow,
    "diagnostics": check_diagnostics,
    "discovery": check_discovery,
    "parallel-updates": check_parallel_updates,
    "reauthentication-flow": check_reauthentication_flow,
    "reconfiguration-flow": check_reconfiguration_flow,
    "runtime-data": check_runtime_data,
    "test-before-setup": check_test_before_setup,
    "unique-config-entry": check_unique_config_entry,
}
