"""The browser test fails when Home Assistant logs a warning or an error about this integration, or
when its screenshot of the hub's QR code does not scan."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
import pytest
import segno

from scripts.devtools.browser_test import is_complaint, qr_code_problem


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        (
            "2026-11-29 16:25:26.680 WARNING (MainThread) [custom_components.est_pairing.announcement] "
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
            "2026-11-29 16:35:52.858 INFO (MainThread) [custom_components.est_pairing.decisions] "
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


def test_the_qr_code_screenshot_must_scan_to_an_enrollment_payload(tmp_path: Path) -> None:
    payload = "est://192.168.1.2:8443/.well-known/est?sha256=" + "ab" * 32
    shot = tmp_path / "11-hub-qr-code.png"
    assert qr_code_problem(tmp_path) == "no screenshot of the hub's QR code"
    Image.new("RGB", (400, 300), "white").save(shot)
    assert "does not scan" in (qr_code_problem(tmp_path) or "")
    segno.make_qr("https://example.com/").save(str(shot), scale=8)
    assert "does not scan" in (qr_code_problem(tmp_path) or "")
    segno.make_qr(payload).save(str(shot), scale=8)
    assert qr_code_problem(tmp_path) is None
