"""The bench's instruction counts: read from callgrind's dump, and taken from real servers under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.devtools.bench import instructions
from scripts.devtools.bench.phases import Bench, Settings


@pytest.mark.parametrize("line", ["totals: 6632621 1200", "summary: 6632621"])
def test_the_total_is_read_from_the_dump(tmp_path: Path, line: str) -> None:
    """Newer callgrind writes ``totals:``, older ``summary:``; the cost lines before them do not count."""
    dump = tmp_path / "callgrind.out.1"
    dump.write_text(f"# callgrind format\nversion: 1\nevents: Ir\nfn=(1) main\n16 5\n{line}\n")
    assert instructions.dump_total(dump) == 6_632_621


def test_a_file_without_totals_is_refused(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("events: Ir\nfn=(1) main\n16 5\n")
    with pytest.raises(ValueError, match="not a callgrind dump"):
        instructions.dump_total(dump)


@pytest.mark.slow  # two servers under valgrind: a minute or two
@pytest.mark.skipif(bool(instructions.missing_tools()), reason="valgrind is not installed")
@pytest.mark.usefixtures("bench_servers_path")
def test_an_enrollment_costs_more_instructions_than_a_bare_request(tmp_path: Path) -> None:
    said: list[str] = []
    settings = Settings(
        host="127.0.0.1",
        requests=0,
        concurrency=instructions.CONCURRENCY,
        sweep=(),
        rounds=1,
        ledger_sizes=(),
        compaction_sizes=(),
        stall_enrollments=0,
        memory_enrollments=0,
        processes=1,
        server_cpus=None,
        load_cpus=None,
        warmup=0.0,
        limit_seconds=0.0,
        work_dir=tmp_path,
        say=said.append,
        loops=("asyncio",),
    )
    counts = Bench(settings).instructions(20)
    assert set(counts) == {"bare asyncio", "enroll asyncio"}
    # A TLS handshake alone is millions of instructions; an enrollment adds a CSR check and a signature.
    assert 1e6 < counts["bare asyncio"] < counts["enroll asyncio"] < 50e6
    assert said[-1].startswith("  enroll asyncio") and said[-1].endswith("x bare asyncio")
