"""The SRP-6a group and steps of the PIN exchange as pysrp computes them, and the worker that runs them.

This module imports nothing but the standard library, and ``srp`` only as the backend its callers
pass in: the hub runs it as a process of its own (``python -I srp6a.py``, see ``srp_worker``),
which must not import Home Assistant nor the integration around it, and the library imports it for
the same parameters and steps. pysrp is called through its public API with its default formulas,
never its process-wide switches (``rfc5054_enable``, ``no_username_in_x``)::

    H = SHA-512; numbers hashed as minimal big-endian bytes (no leading zero bytes, no padding)
    k = H(N || g)                x = H(s || H(I || ":" || P))     v = g^x
    A = g^a                      B = k*v + g^b                    u = H(A || B)
    S = (B - k*g^x)^(a + u*x) = (A * v^u)^b                       K = H(S)
    M1 = H((H(N) xor H(g)) || H(I) || s || A || B || K)           M2 = H(A || M1 || K)

The worker reads one JSON object a line on standard input and answers each with one line on
standard output, in order. The first line is its set-up: ``{"path": [...], "backend": "srp"}`` (the
parent's ``sys.path``, so that it finds ``srp`` where the parent does, and the backend module);
then requests ``{"n": N, "op": OP, ...}`` with binary fields in base64, answered ``{"n": N, "ok":
{...}}`` or ``{"n": N, "error": REASON}``. It ends at the end of its input.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
import importlib
import json
import secrets
import sys
from typing import Any, Final, Protocol, TextIO

METHOD: Final = "srp6a-sha512-3072"  # the one exchange offered: its name on the wire and in mDNS TXT

# RFC 5054 Appendix A, the 3072-bit group, g = 5: the prime of RFC 3526 group 15,
# N = 2^3072 - 2^3008 - 1 + 2^64 * (floor(2^2942 * pi) + 1690314), a safe prime.
N_HEX: Final = (
    b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    b"EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    b"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    b"83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    b"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    b"15728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    b"ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200C"
    b"BBE117577A615D6C770988C0BAD946E208E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
G_HEX: Final = b"05"  # bytes, not str: pysrp's OpenSSL backend takes only bytes
N: Final = int(N_HEX, 16)
G: Final = int(G_HEX, 16)
N_BYTES: Final = 384
HASH_BYTES: Final = 64  # SHA-512: M1, M2, K and both MACs
SALT_BYTES: Final = 16  # the hub's salts: 16 bytes, the first one not zero
EPHEMERAL_BYTES: Final = 32  # a and b: 256 bits (RFC 5054 §2.5.4: at least 256), as pysrp's OpenSSL backend
_PURE_PYTHON_EPHEMERAL_BYTES: Final = 256  # pysrp's pure-Python backend takes a and b in 256 bytes
BACKEND_MODULE: Final = "srp"  # OpenSSL through ctypes where libssl.so loads, else pure Python


class SrpUser(Protocol):
    """pysrp's client side (the appliance)."""

    def start_authentication(self) -> tuple[str, bytes]:
        """(I, A)."""

    def process_challenge(self, salt: bytes, b_public: bytes, /) -> bytes | None:
        """M1, or None if B fails the safety check."""

    def verify_session(self, proof: bytes, /) -> None:
        """Check M2."""

    def authenticated(self) -> bool:
        """Whether M2 was right."""

    def get_session_key(self) -> bytes | None:
        """K, once M2 was right."""


class SrpVerifier(Protocol):
    """pysrp's server side (the hub)."""

    def get_challenge(self) -> tuple[bytes | None, bytes | None]:
        """(s, B), or Nones if A failed the safety check."""

    def verify_session(self, proof: bytes, /) -> bytes | None:
        """M2 if M1 is right, else None."""

    def get_session_key(self) -> bytes | None:
        """K, once M1 was right."""


class SrpBackend(Protocol):
    """The ``srp`` package's public API: the package itself, or one of its two backend modules."""

    SHA512: int
    NG_CUSTOM: int
    User: Callable[..., SrpUser]
    Verifier: Callable[..., SrpVerifier]
    create_salted_verification_key: Callable[..., tuple[bytes, bytes]]


def group(backend: SrpBackend) -> dict[str, Any]:
    """The keyword arguments that give pysrp this exchange's group and hash."""
    return {"hash_alg": backend.SHA512, "ng_type": backend.NG_CUSTOM, "n_hex": N_HEX, "g_hex": G_HEX}


def with_ephemeral[T](make: Callable[[bytes], T], secret: bytes) -> T:
    """Call ``make`` with an ephemeral secret (a or b) in the length the backend takes.

    pysrp's two backends take the same number in different lengths: the OpenSSL one 32 bytes, the
    pure-Python one 256 (this one, zero-padded). Each checks the length before any arithmetic.
    """
    try:
        return make(secret)
    except ValueError:
        return make(secret.rjust(_PURE_PYTHON_EPHEMERAL_BYTES, b"\0"))


# --- the hub's steps: plain bytes in, plain bytes out ------------------------------------------------


def make_verifier(backend: SrpBackend, appliance_id: str, pin: str) -> tuple[bytes, bytes]:
    """(s, v) for this id and PIN: a new 16-byte salt, its first byte not zero (one exponentiation)."""
    while True:
        salt, verifier = backend.create_salted_verification_key(
            appliance_id, pin, salt_len=SALT_BYTES, **group(backend)
        )
        # pysrp returns the salt as a number's minimal bytes: 15 or fewer one time in 256.
        if len(salt) == SALT_BYTES:
            return salt, verifier


def challenge(
    backend: SrpBackend, appliance_id: str, salt: bytes, verifier: bytes, a_public: bytes, b_secret: bytes
) -> bytes:
    """B for this verifier, A and b (one exponentiation); ValueError if A fails the safety check."""
    _, b_public = _server(backend, appliance_id, salt, verifier, a_public, b_secret).get_challenge()
    if b_public is None:
        raise ValueError("'A' is zero modulo N (the SRP-6a safety check)")
    return b_public


def verify(
    backend: SrpBackend,
    appliance_id: str,
    salt: bytes,
    verifier: bytes,
    a_public: bytes,
    b_secret: bytes,
    proof: bytes,
) -> tuple[bytes, bytes] | None:
    """(M2, K) if ``proof`` is the M1 of the exchange with this verifier, A and b; else None.

    pysrp's server side is made again from b, which recomputes B: the hub keeps plain data between
    the requests. pysrp compares M1 with ``==``, not in constant time; each session is checked once,
    with its own b, so the time of one comparison says nothing about another session's M1.
    """
    server = _server(backend, appliance_id, salt, verifier, a_public, b_secret)
    if (answer := server.verify_session(proof)) is None or (key := server.get_session_key()) is None:
        return None
    return answer, key


def pin_matches(backend: SrpBackend, appliance_id: str, salt: bytes, verifier: bytes, pin: str) -> bool:
    """Whether ``pin`` is the PIN this salt and verifier were made from (a whole exchange, both sides).

    For a PIN sent in HTTP Basic. pysrp has no call that recomputes a verifier for a given salt, so
    both sides of an exchange run here, with fresh ephemerals each time: nothing about the stored
    record can be timed across attempts. Seven exponentiations.
    """
    user = with_ephemeral(
        lambda a: backend.User(appliance_id, pin, bytes_a=a, **group(backend)),
        secrets.token_bytes(EPHEMERAL_BYTES),
    )
    _, a_public = user.start_authentication()
    b_secret = secrets.token_bytes(EPHEMERAL_BYTES)
    b_public = challenge(backend, appliance_id, salt, verifier, a_public, b_secret)
    proof = user.process_challenge(salt, b_public)
    return (
        proof is not None
        and verify(backend, appliance_id, salt, verifier, a_public, b_secret, proof) is not None
    )


def _server(
    backend: SrpBackend, appliance_id: str, salt: bytes, verifier: bytes, a_public: bytes, b_secret: bytes
) -> SrpVerifier:
    return with_ephemeral(
        lambda b: backend.Verifier(appliance_id, salt, verifier, a_public, bytes_b=b, **group(backend)),
        b_secret,
    )


# --- the worker process ------------------------------------------------------------------------------


def _run(backend: SrpBackend, op: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One request's answer (its fields checked by the library that sent it)."""
    if op not in {"verifier", "matches", "challenge", "verify"}:
        raise ValueError(f"unknown operation {op!r}")
    if op == "verifier":
        salt, verifier = make_verifier(backend, fields["id"], fields["pin"])
        return {"salt": b64(salt), "verifier": b64(verifier)}
    record = (fields["id"], from_b64(fields["salt"]), from_b64(fields["verifier"]))
    if op == "matches":
        return {"matches": pin_matches(backend, *record, fields["pin"])}
    exchange = (*record, from_b64(fields["A"]), from_b64(fields["b"]))
    if op == "challenge":
        return {"B": b64(challenge(backend, *exchange))}
    outcome = verify(backend, *exchange, from_b64(fields["M1"]))
    return {"M2": None, "K": None} if outcome is None else {"M2": b64(outcome[0]), "K": b64(outcome[1])}


def serve(backend: SrpBackend, requests: Iterable[str], answers: TextIO) -> None:
    """Answer each request line with one line, in order; a request that fails gets its error's name.

    Only the name: a message could quote the request's fields, and some are secrets.
    """
    for line in requests:
        number = None
        try:
            request = json.loads(line)
            number = request["n"]
            answer: dict[str, Any] = {"n": number, "ok": _run(backend, request["op"], request)}
        except (ValueError, KeyError, TypeError) as err:
            answer = {"n": number, "error": type(err).__name__}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """The worker process: its set-up line, then requests until the end of its input."""
    setup = json.loads(stdin.readline() or "{}")
    sys.path[:] = [entry for entry in setup.get("path", sys.path) if isinstance(entry, str)]
    backend: SrpBackend = importlib.import_module(setup.get("backend", BACKEND_MODULE))
    serve(backend, stdin, stdout)


def b64(data: bytes) -> str:
    """Standard base64, padded: the binary fields of the worker's lines, and of the library's JSON."""
    return base64.b64encode(data).decode("ascii")


def from_b64(text: str) -> bytes:
    """What :func:`b64` made (binascii.Error, a ValueError, for anything else)."""
    return base64.b64decode(text, validate=True)


if __name__ == "__main__":
    main()
