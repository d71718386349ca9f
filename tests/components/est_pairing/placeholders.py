"""Which placeholders a flow result's translations use that the result does not give.

The frontend formats each string a flow result shows (its step's title, description, field labels and
helpers, the errors shown, the menu options, the abort reason, the progress text) with the result's
``description_placeholders``; a placeholder left out shows as ``{name}`` or breaks the message. This
is what it looks up for config, options and subentry flows, from ``translations/en.json``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import json
from pathlib import Path
import string
from typing import Any

from homeassistant.data_entry_flow import FlowResult, FlowResultType

TRANSLATIONS: dict[str, Any] = json.loads(
    (Path(__file__).parents[3] / "custom_components" / "est_pairing" / "translations" / "en.json").read_text()
)


def used(text: str) -> set[str]:
    """The placeholders a translated string uses."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def missing(section: Mapping[str, Any], result: FlowResult[Any, Any]) -> dict[str, set[str]]:
    """Translation key (within the flow's section) -> the placeholders it uses that ``result`` lacks."""
    given = set(result.get("description_placeholders") or {})
    return {key: lacking for key, text in _shown(section, result) if (lacking := used(text) - given)}


def _shown(section: Mapping[str, Any], result: FlowResult[Any, Any]) -> Iterator[tuple[str, str]]:
    """(key, text) of each string of ``section`` the frontend shows for ``result``."""
    kind = result["type"]
    if kind is FlowResultType.ABORT:
        if result.get("translation_domain") is None:  # else a shared reason of another domain
            yield from _entry(section, "abort", result["reason"])
        return
    if kind is FlowResultType.CREATE_ENTRY:
        yield from _entry(section, "create_entry", result.get("description") or "default")
        return
    step_id = result.get("step_id")
    step = section.get("step", {}).get(step_id, {})
    for part in ("title", "description"):
        if isinstance(step.get(part), str):
            yield f"step.{step_id}.{part}", step[part]
    for group in ("data", "data_description", "menu_options", "menu_option_descriptions"):
        for name, text in step.get(group, {}).items():
            yield f"step.{step_id}.{group}.{name}", text
    if kind is FlowResultType.FORM:
        for error in (result.get("errors") or {}).values():
            yield from _entry(section, "error", error)
    if kind is FlowResultType.SHOW_PROGRESS:
        yield from _entry(section, "progress", result.get("progress_action") or "")


def _entry(section: Mapping[str, Any], group: str, key: str) -> Iterator[tuple[str, str]]:
    if isinstance(text := section.get(group, {}).get(key), str):
        yield f"{group}.{key}", text
