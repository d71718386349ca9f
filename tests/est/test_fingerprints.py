"""Fingerprints as people compare them: grouped for reading, and read back however they were typed."""

from __future__ import annotations

import pytest

from custom_components.est_pairing.est.fingerprints import format_fingerprint, normalize_fingerprint


def test_fingerprint_formatting() -> None:
    assert format_fingerprint("ab12cd34ef56" + "0" * 52, groups=2) == "AB12 CD34"
    assert len(format_fingerprint("a" * 64).split()) == 16


def test_fingerprints_are_normalized() -> None:
    assert normalize_fingerprint("AB:" * 31 + "AB") == "ab" * 32
    with pytest.raises(ValueError, match="64 hexadecimal"):
        normalize_fingerprint("abc")
