"""The two-OpenSSLs experiment does what it says: real handshakes, one check after each piece of work."""

from __future__ import annotations

import importlib.util

import pytest

from scripts.devtools.bench import two_openssls
from scripts.devtools.bench.workload import csr_bodies

pytestmark = pytest.mark.slow  # the experiment's processes


def test_a_handshake_completes_with_the_listener_settings() -> None:
    server = two_openssls.Handshakes().run()
    assert server.version() in {"TLSv1.2", "TLSv1.3"}
    assert server.cipher() is not None
    assert server.getpeercert() is None  # the client sent no certificate (the EST server asks, optionally)


def test_each_check_follows_its_own_piece_of_work() -> None:
    bodies = csr_bodies(3)
    calls: list[int] = []
    spent = two_openssls.check_after(lambda: calls.append(1), bodies)
    assert len(calls) == len(bodies)
    assert spent > 0


def test_the_experiment_prints_a_figure_for_each_kind_of_work(capsys: pytest.CaptureFixture[str]) -> None:
    two_openssls.main(rounds=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("one CSR check")
    with_pyopenssl = importlib.util.find_spec("OpenSSL") is not None
    assert len(lines) == (6 if with_pyopenssl else 5)
    assert "TLS handshake" in lines[4]
    if with_pyopenssl:
        assert "pyOpenSSL" in lines[5]
    assert all(float(line.rsplit(":", 1)[1].removesuffix("us")) > 0 for line in lines[1:])


@pytest.mark.skipif(importlib.util.find_spec("OpenSSL") is None, reason="pyOpenSSL is not installed")
def test_the_same_handshake_runs_in_cryptographys_openssl() -> None:
    from cryptography.hazmat.backends import default_backend
    from OpenSSL import SSL

    from scripts.devtools.bench.one_openssl import SameLibraryHandshakes

    server = SameLibraryHandshakes().run()
    assert server.get_protocol_version_name() in {"TLSv1.2", "TLSv1.3"}
    assert server.get_cipher_name() is not None
    assert server.get_peer_certificate() is None  # asked, optional: the client sent none
    # the OpenSSL cryptography runs on (the experiment's whole point)
    assert SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode() == default_backend().openssl_version_text()
