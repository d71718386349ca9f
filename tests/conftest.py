"""Fixtures shared by the Home Assistant tests."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/ in every test."""


@pytest.fixture(autouse=True)
def zeroconf(mock_async_zeroconf: MagicMock) -> MagicMock:
    """Home Assistant's shared zeroconf instance, mocked: nothing multicasts in unit tests."""
    return mock_async_zeroconf
