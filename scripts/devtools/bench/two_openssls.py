"""An experiment on the cost of a CSR check right after a TLS handshake in the same process.

Python's ``ssl`` module and ``cryptography`` each bring their own OpenSSL (the ``ssl`` module the one
Python was built with, ``cryptography``'s wheels a copy linked into their extension), with their own
code and their own precomputed tables for the curves. A server that terminates TLS and then checks
a CSR runs both, one after the other. This times the CSR check of every enrollment (load and
signature check, ``wire.load_csr``) in thread CPU time, on one CPU, alone and right after other
work of about a TLS handshake's length:

- a TLS handshake through the ``ssl`` module, with the server's own TLS settings and a listener
  certificate from a household CA (both sides in this process, over memory buffers);
- pure Python of the same length (touches little memory);
- ``cryptography``'s own key exchange, signatures and a CSR check (the same library as the check);
- the same TLS handshake in ``cryptography``'s OpenSSL, through pyOpenSSL, where it is installed
  (``one_openssl``): what one OpenSSL for both would do.

If the check is slower only after the handshake, that points to the other OpenSSL evicting its
code and tables from the processor's caches, not any work of that length.
``scripts/bench --two-openssls`` runs it (docs/performance.md, "Where an enrollment's CPU goes").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
import importlib.util
import ssl
import statistics
import time
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from custom_components.est_pairing.est.ca import HouseholdCA
from custom_components.est_pairing.est.tls import ListenerIdentity, ListenerNames, server_ssl_context
from custom_components.est_pairing.est.wire import load_csr
from est_tools.appliance.client import client_ssl_context

from .workload import csr_bodies

_CSRS = 64  # distinct requests, checked in turn
_HOST = "127.0.0.1"
_FLIGHTS = 8  # rounds of messages a TLS 1.2 or 1.3 handshake needs, with room to spare


class Handshakes:
    """TLS handshakes in memory, with the listener's settings: both sides run here, nothing sleeps.

    Over a real socket the server's thread would wait for the client, and a thread that sleeps
    finds its caches colder when it wakes whatever it did before; over memory buffers only the
    handshake's own work runs (the client's half included, in the same ``ssl`` module's OpenSSL).
    """

    def __init__(self) -> None:
        ca, identity = experiment_identity()
        self._server = server_ssl_context(identity, ca.certificate)
        self._client = client_ssl_context(ca.certificate)

    def run(self) -> ssl.SSLObject:
        """One full handshake; returns the server's side of it."""
        client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
        client = self._client.wrap_bio(client_in, client_out, server_hostname=_HOST)
        server = self._server.wrap_bio(server_in, server_out, server_side=True)

        def exchange() -> None:
            server_in.write(client_out.read())
            client_in.write(server_out.read())

        complete_handshake((client, server), ssl.SSLWantReadError, exchange)
        return server


def experiment_identity() -> tuple[HouseholdCA, ListenerIdentity]:
    """A household CA, and a listener certificate and key from it for the experiment's address."""
    ca = HouseholdCA.create("Experiment")
    return ca, ListenerIdentity.issue(ca, ListenerNames.from_hosts([_HOST]), datetime.now(UTC))


class HandshakeSide(Protocol):
    """One side of an in-memory TLS handshake (``ssl.SSLObject``, pyOpenSSL's ``Connection``)."""

    def do_handshake(self) -> None:
        """Take the handshake as far as the bytes received allow."""


def complete_handshake(
    sides: Sequence[HandshakeSide], want_read: type[Exception], exchange: Callable[[], None]
) -> None:
    """Step both sides until both finish, ``exchange`` passing each one's flight to the other."""
    for _ in range(_FLIGHTS):
        finished = 0
        for side in sides:
            try:
                side.do_handshake()
                finished += 1
            except want_read:
                pass
        exchange()
        if finished == len(sides):
            return
    raise RuntimeError("the in-memory TLS handshake did not finish")


def pure_python(loops: int = 12_000) -> int:
    """Interpreter work that touches little memory."""
    total = 0
    for number in range(loops):
        total += number * number
    return total


def cryptography_only(body: bytes) -> None:
    """Asymmetric work of a handshake's kind, and a CSR check, all in ``cryptography``'s OpenSSL."""
    for _ in range(5):
        x25519.X25519PrivateKey.generate().exchange(x25519.X25519PrivateKey.generate().public_key())
        ec.generate_private_key(ec.SECP256R1()).sign(b"transcript", ec.ECDSA(hashes.SHA256()))
    load_csr(body)


def check_after(before: Callable[[], object], bodies: Sequence[bytes]) -> float:
    """Thread CPU seconds of one CSR check, each run right after ``before``; mean over ``bodies``."""
    spent = 0.0
    for body in bodies:
        before()
        started = time.thread_time()
        load_csr(body)
        spent += time.thread_time() - started
    return spent / len(bodies)


def cost(work: Callable[[], object], times: int = 50) -> float:
    """Thread CPU seconds of one run of ``work``."""
    started = time.thread_time()
    for _ in range(times):
        work()
    return (time.thread_time() - started) / times


def main(rounds: int = 3) -> None:
    """Print, for each kind of work before it, what one CSR check costs (medians of ``rounds``)."""
    bodies = csr_bodies(_CSRS)
    handshakes = Handshakes()
    before: dict[str, Callable[[], object]] = {
        "nothing (checks back to back)": lambda: None,
        "pure Python": pure_python,
        "cryptography's own signatures and a CSR check": lambda: cryptography_only(bodies[0]),
        "a TLS handshake, both sides (the ssl module's OpenSSL)": handshakes.run,
    }
    if importlib.util.find_spec("OpenSSL") is not None:
        from .one_openssl import SameLibraryHandshakes  # pyOpenSSL is optional

        before["the same handshake in cryptography's OpenSSL (pyOpenSSL)"] = SameLibraryHandshakes().run
    figures: dict[str, list[tuple[float, float]]] = {label: [] for label in before}
    for _ in range(rounds):
        for label, work in before.items():
            figures[label].append((cost(work), check_after(work, bodies * 2)))
    print(f"one CSR check (load + signature), thread CPU, median of {rounds} rounds of {2 * _CSRS} checks")
    for label, runs in figures.items():
        work_us = statistics.median(run[0] for run in runs) * 1e6
        check_us = statistics.median(run[1] for run in runs) * 1e6
        print(f"  after {label:64s} ({work_us:5.0f} us of work): {check_us:6.1f} us")
