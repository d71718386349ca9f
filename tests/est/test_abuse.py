"""The named abuse table (tests/est/abuse/cases.py) against ``est-server serve`` over real TLS.

One standalone server for the whole table, started as a user would; every case must get its answer,
leave the ledger as it was (but for what its set-up obtained honestly), and leave the server serving.
``scripts/abuse`` runs the same table against any running server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
import pytest

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.storage import JournalFile

from .abuse import __main__ as scripts_abuse
from .abuse.cases import CASES, AbuseCase
from .abuse.run import run_case
from .abuse.target import Target
from .standalone import ServerProcess

pytestmark = pytest.mark.slow  # the abuse table, each case over real TLS


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess.start(tmp_path_factory.mktemp("abuse") / "data", "--user", "oven:123456")
    yield server
    assert server.stop() == 0


@pytest.fixture
def target(standalone: ServerProcess) -> Target:
    ca = x509.load_pem_x509_certificate((standalone.data_dir / "ca.pem").read_bytes())
    return Target(host="127.0.0.1", port=standalone.port, ca=ca, data_dir=standalone.data_dir)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_abuse(target: Target, case: AbuseCase) -> None:
    verdict = await run_case(target, case)
    assert verdict.passed, verdict.line()


def test_the_table_covers_the_issue() -> None:
    """Issue 7 lists these; the table must keep naming each."""
    names = " | ".join(case.name for case in CASES)
    for phrase in [
        "bad base64", "truncated DER", "garbage DER", "a certificate instead of a CSR", "bad signature",
        "CA:TRUE", "keyCertSign", "another appliance", "server's host name", "1,000 alternative names",
        "100 KB subject", "RSA-1024", "unknown curve", "wrong content type", "over the limit, chunked",
        "unknown label", "path traversal in a label", "wrong method", "non-UTF-8 credentials",
        "plain HTTP on the TLS port", "TLS garbage", "HTTP/1.0", "revoked certificate",
        "expired certificate", "pending request replayed with a different key",
    ]:  # fmt: skip
        assert phrase in names, phrase


async def test_after_the_table_the_state_loads(standalone: ServerProcess, target: Target) -> None:
    """The CA key still loads and the ledger parses, with no serial twice.

    It runs after the table in this module, and obtains a certificate of its own first: run alone
    (or after cases that issued nothing) it still checks a ledger with an issuance in it.
    """
    certificate, _ = await target.enrolled()
    data_dir: Path = standalone.data_dir
    HouseholdCA.from_pem((data_dir / "ca.pem").read_bytes(), (data_dir / "ca.key").read_bytes())
    events = JournalFile(data_dir / "ledger.jsonl").read_sync()
    serials = [int(e["serial"], 16) for e in events if e["op"] == "issued"]
    assert certificate.serial_number in serials
    assert len(serials) == len(set(serials)), "a serial number issued twice"
    assert await target.serves()
    assert standalone.alive()


@pytest.mark.parametrize("ca", ["missing", "garbage"])
def test_scripts_abuse_without_a_readable_ca_says_the_server_is_unusable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca: str
) -> None:
    """Exit 2 and one line naming the file (docs/reliability.md), not a traceback and exit 1."""
    if ca == "garbage":
        (tmp_path / "ca.pem").write_text("not a certificate\n")
    code = scripts_abuse.main(["--url", "https://127.0.0.1:9", "--data-dir", str(tmp_path)])
    assert code == 2
    reason = "No such file or directory" if ca == "missing" else "not a PEM certificate"
    assert capsys.readouterr().err == f"scripts/abuse: --ca {tmp_path / 'ca.pem'}: {reason}\n"
