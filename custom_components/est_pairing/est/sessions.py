"""The client-certificate chain of each TLS connection, resumed TLS 1.2 sessions included.

OpenSSL verifies a client's certificate chain in a full handshake only. A TLS 1.2 client that
resumes a session by its id (RFC 5246 §7.3; the listener sends no session tickets, and no TLS 1.3
tickets, so this is the only resumption left) presents no certificate: the session carries its
verified leaf, but ``get_verified_chain()`` comes back empty. Re-enrollment, which authenticates with
the leaf, and a factory certificate's retry, which needs its chain up to the manufacturer's CA, would
both fail on such a connection. So the chain verified in each full handshake is kept by session id,
for as long as a bounded number of newer sessions allows.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
import ssl
from typing import Final

MAX_REMEMBERED_SESSIONS: Final = 1024  # a few KB each; OpenSSL's own cache holds up to 20,480


@dataclass(frozen=True, slots=True)
class ClientChain:
    """The DER certificates TLS verified for a connection, leaf first.

    ``complete`` is False for a resumed session whose chain was forgotten: only its leaf is known
    (verified when the session began).
    """

    certificates: tuple[bytes, ...] = ()
    complete: bool = True


NO_CLIENT_CERTIFICATE: Final = ClientChain()


class SessionChains:
    """Remembers verified client chains by TLS session id (least recently used forgotten first)."""

    def __init__(self, capacity: int | None = None) -> None:
        self._capacity = MAX_REMEMBERED_SESSIONS if capacity is None else capacity
        self._chains: OrderedDict[bytes, tuple[bytes, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._chains)

    def chain_for(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> ClientChain:
        """The connection's client chain, right after its handshake."""
        if not ssl_object.session_reused:
            verified = tuple(ssl_object.get_verified_chain())
            if not verified:
                return NO_CLIENT_CERTIFICATE
            # Only a TLS 1.2 session can be resumed (no tickets are sent), and reading ``session`` is
            # not free: CPython before 3.12.7 and 3.13.1 leaks a copy of the session, the client's
            # chain with it, at every read (gh-116810), about 5 KB a connection.
            if (
                ssl_object.version() == "TLSv1.2"
                and (session := ssl_object.session) is not None
                and session.id
            ):
                self._chains[session.id] = verified
                self._chains.move_to_end(session.id)
                while len(self._chains) > self._capacity:
                    self._chains.popitem(last=False)
            return ClientChain(verified)
        session = ssl_object.session
        if session is not None and (known := self._chains.get(session.id)) is not None:
            self._chains.move_to_end(session.id)
            return ClientChain(known)
        leaf = ssl_object.getpeercert(binary_form=True)
        return ClientChain((leaf,), complete=False) if leaf else NO_CLIENT_CERTIFICATE
