"""The household's name as the set-up form takes it: tidied, and no longer than the CA's name has room for."""

from __future__ import annotations

from typing import Final

from .est.ca import HOUSEHOLD_CA_SUFFIX, MAX_COMMON_NAME_BYTES, household_name

MAX_HOUSEHOLD_NAME_BYTES: Final = MAX_COMMON_NAME_BYTES - len(HOUSEHOLD_CA_SUFFIX)


def tidy_household_name(name: str) -> str:
    """The name typed, with control characters (a pasted line break) as spaces, without outer spaces."""
    return household_name(name)


def shorten_household_name(name: str) -> str:
    """A name to suggest (Home Assistant's location name): tidied, and cut to fit the CA's name."""
    return household_name(name, MAX_HOUSEHOLD_NAME_BYTES)
