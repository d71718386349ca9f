"""Waiting for a condition in tests, instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest


async def eventually(condition: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.01)
