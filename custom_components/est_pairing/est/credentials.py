"""What a client may present besides a certificate: HTTP Basic credentials (RFC 7030 §3.2.3)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """Username and password from an Authorization header. ``repr`` never shows the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r}, password=<{len(self.password)} chars>)"
