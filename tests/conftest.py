"""What every test needs before the first one runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.est import forge


def _let_cryptography_meet_the_real_datetime() -> None:
    """Sign and read one certificate while ``datetime`` is the standard library's.

    cryptography (from 46) looks ``datetime.datetime`` up once, the first time it converts a time,
    and keeps the class it found. Tests frozen by Home Assistant's test plugin (freezegun) replace
    that class for their duration: were a frozen test the first to sign something, every later
    test would get "'datetime' object is not an instance of 'HAFakeDatetime'".
    """
    key = forge.new_key()
    now = datetime.now(UTC)
    signed = forge.certificate(
        None, key, key.public_key(), not_before=now, not_after=now + timedelta(minutes=1)
    )
    if signed.not_valid_after_utc <= signed.not_valid_before_utc:
        raise AssertionError("cryptography read back a certificate it just signed wrongly")


_let_cryptography_meet_the_real_datetime()
