"""What the hub keeps instead of a PIN (a salt and an SRP verifier), and the slow work on it.

Making a verifier from a PIN, checking a PIN against one, and the exchange's big-number steps each
raise a 3072-bit number to a secret power. :class:`SrpWork` is that work as the event loop asks for
it; the hub runs it in a worker process (``srp_worker.SrpWorker``): pysrp's pure-Python backend
holds the GIL through each step, so a thread would not keep the loop free. :class:`ThreadedSrp`
runs it in threads, for callers without a loop to protect (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import srp

from . import srp6a
from .errors import MalformedRequest
from .issuance import check_claimed_id
from .limits import MAX_SECRET_LENGTH
from .srp6a import METHOD, N_BYTES, SALT_BYTES, N, SrpBackend, b64, from_b64

DEFAULT_BACKEND: Final[SrpBackend] = srp  # OpenSSL through ctypes where libssl.so loads, else pure Python


@dataclass(frozen=True, slots=True)
class PinVerifier:
    """A salt and an SRP verifier for one appliance id and PIN: what the hub keeps instead of the PIN.

    Finding the PIN from it takes a guess per exponentiation (a PIN's few digits do not resist that: it
    is kept as the owner's approvals are), and nothing the appliance or an eavesdropper sees helps.
    """

    appliance_id: str
    salt: bytes = field(repr=False)
    verifier: bytes = field(repr=False)

    @classmethod
    def create(cls, appliance_id: str, pin: str, backend: SrpBackend = DEFAULT_BACKEND) -> PinVerifier:
        """Make the record for this id and PIN (slow: one exponentiation)."""
        check_claimed_id(appliance_id)
        check_pin(pin)
        return cls(appliance_id, *srp6a.make_verifier(backend, appliance_id, pin))

    def matches(self, pin: str, backend: SrpBackend = DEFAULT_BACKEND) -> bool:
        """Whether ``pin`` is the PIN this record was made from (slow: seven exponentiations)."""
        if not pin or len(pin) > MAX_SECRET_LENGTH:
            return False
        return srp6a.pin_matches(backend, self.appliance_id, self.salt, self.verifier, pin)

    def srp_record(self) -> tuple[str, bytes, bytes]:
        """Identity, salt and verifier: the hub's arguments to each SRP step."""
        return self.appliance_id, self.salt, self.verifier

    def to_dict(self) -> dict[str, str]:
        """For storage (JSON)."""
        return {
            "method": METHOD,
            "appliance_id": self.appliance_id,
            "salt": b64(self.salt),
            "verifier": b64(self.verifier),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PinVerifier:
        """What :meth:`to_dict` made; ValueError if it is not such a record."""
        if data.get("method") != METHOD:
            raise ValueError(f"not a {METHOD} verifier")
        appliance_id, salt, verifier = data.get("appliance_id"), data.get("salt"), data.get("verifier")
        if not isinstance(appliance_id, str) or not isinstance(salt, str) or not isinstance(verifier, str):
            raise ValueError("a verifier record needs appliance_id, salt and verifier")  # noqa: TRY004
        try:
            record = cls(appliance_id, from_b64(salt), from_b64(verifier))
        except ValueError:
            raise ValueError("a verifier record's salt and verifier are base64") from None
        if len(record.salt) != SALT_BYTES or not record.salt[0]:
            raise ValueError(f"a verifier record's salt is {SALT_BYTES} bytes, the first one not zero")
        number(record.verifier, "verifier", ValueError)
        return record


def check_pin(pin: str) -> None:
    """MalformedRequest unless ``pin`` can be made into a verifier (1 to 128 characters)."""
    if not pin:
        raise MalformedRequest("a PIN is needed")
    if len(pin) > MAX_SECRET_LENGTH:
        raise MalformedRequest(f"secret is longer than {MAX_SECRET_LENGTH} characters")


def number[E: Exception](data: bytes, name: str, error: type[E]) -> bytes:
    """A public value (A, B, v): minimal big-endian bytes of a number in 1..N-1."""
    if not data:
        raise error(f"'{name}' is empty")
    if len(data) > N_BYTES:
        raise error(f"'{name}' must be at most {N_BYTES} bytes (a number below N), not {len(data)}")
    if not data[0]:
        raise error(f"'{name}' starts with a zero byte: send the number's minimal big-endian bytes")
    value = int.from_bytes(data, "big")
    if value % N == 0:
        raise error(f"'{name}' is zero modulo N (the SRP-6a safety check)")
    if value >= N:
        raise error(f"'{name}' is not reduced modulo N")
    return data


class SrpWork(Protocol):
    """The hub's slow SRP steps, asked for from the event loop (``srp6a`` says what each computes)."""

    async def make_verifier(self, appliance_id: str, pin: str) -> PinVerifier:
        """The record for this id and PIN (the caller checked both)."""

    async def pin_matches(self, verifier: PinVerifier, pin: str) -> bool:
        """Whether ``pin`` is the PIN ``verifier`` was made from."""

    async def challenge(self, verifier: PinVerifier, a_public: bytes, b_secret: bytes) -> bytes:
        """B for this verifier, A and b."""

    async def verify(
        self, verifier: PinVerifier, a_public: bytes, b_secret: bytes, proof: bytes
    ) -> tuple[bytes, bytes] | None:
        """(M2, K) if ``proof`` is the exchange's M1, else None."""


class ThreadedSrp:
    """:class:`SrpWork` in worker threads: for tests and benchmarks, not beside an event loop that serves.

    pysrp's pure-Python backend holds the GIL through each exponentiation: a thread keeps the step
    off the loop's code but not off its interpreter.
    """

    def __init__(self, backend: SrpBackend = DEFAULT_BACKEND) -> None:
        self.backend = backend

    async def make_verifier(self, appliance_id: str, pin: str) -> PinVerifier:
        """See :class:`SrpWork`."""
        return await asyncio.to_thread(PinVerifier.create, appliance_id, pin, self.backend)

    async def pin_matches(self, verifier: PinVerifier, pin: str) -> bool:
        """See :class:`SrpWork`."""
        return await asyncio.to_thread(verifier.matches, pin, self.backend)

    async def challenge(self, verifier: PinVerifier, a_public: bytes, b_secret: bytes) -> bytes:
        """See :class:`SrpWork`."""
        return await asyncio.to_thread(
            srp6a.challenge, self.backend, *verifier.srp_record(), a_public, b_secret
        )

    async def verify(
        self, verifier: PinVerifier, a_public: bytes, b_secret: bytes, proof: bytes
    ) -> tuple[bytes, bytes] | None:
        """See :class:`SrpWork`."""
        return await asyncio.to_thread(
            srp6a.verify, self.backend, *verifier.srp_record(), a_public, b_secret, proof
        )
