"""The bench's repeats mode against the real standalone server: repeated requests add no certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.devtools.bench import repeats

pytestmark = pytest.mark.slow  # a bench run against a real server


@pytest.mark.usefixtures("bench_servers_path")
def test_repeated_requests_leave_the_ledger_as_it_was(tmp_path: Path) -> None:
    said: list[str] = []
    result = repeats.run(tmp_path, "127.0.0.1", count=60, concurrency=4, cpus=None, say=said.append)
    assert result.before.certificates == result.warm.certificates == result.after.certificates == 3
    assert result.after.valid == 3  # the renewed one, its renewal, the generated key's
    assert result.statuses == {200: 40, 403: 10, 429: 10}
    assert result.certificates_handed_out == 2  # the generated key's and the renewal's, again and again
    assert said[-1].startswith("  answers (")
