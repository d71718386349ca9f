"""The browser test fails when Home Assistant logs a warning or an error about this integration."""

from __future__ import annotations

import pytest

from scripts.devtools.browser_test import is_complaint


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        (
            "2026-11-29 16:25:26.680 WARNING (MainThread) [custom_components.est_pairing.runtime] "
            "The EST server's certificate no longer covers Home Assistant's addresses",
            True,
        ),
        (
            "2026-11-29 16:25:26.680 ERROR (MainThread) [homeassistant.config_entries] "
            "Error setting up entry Home Household CA for est_pairing",
            True,
        ),
        (
            "2026-11-29 16:25:26.680 WARNING (MainThread) [homeassistant.helpers.frame] Detected that "
            "custom integration 'est_pairing' calls a deprecated function",
            True,
        ),
        (
            "2026-11-29 16:29:02.782 WARNING (SyncWorker_0) [homeassistant.loader] We found a custom "
            "integration est_pairing which has not been tested by Home Assistant.",
            False,
        ),
        (
            "2026-11-29 16:35:52.858 INFO (MainThread) [custom_components.est_pairing.runtime] "
            "Appliance oven-7f3a asks to enroll from 127.0.0.1; waiting for the owner",
            False,
        ),
        (
            "2026-11-29 16:57:46.910 ERROR (MainThread) [homeassistant.config_entries] "
            "Error setting up entry Radio Browser for radio_browser",
            False,
        ),
    ],
)
def test_complaints_about_this_integration(line: str, complaint: bool) -> None:
    assert is_complaint(line) is complaint
