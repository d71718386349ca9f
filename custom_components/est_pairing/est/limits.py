"""Every bound the listener and the policy enforce, in one place (docs/reliability.md explains each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Requests
MAX_BODY_BYTES: Final = 16 * 1024  # a P-384 or RSA-4096 CSR in base64 is under 4 KiB
MAX_SUBJECT_BYTES: Final = 1024  # DER of the CSR subject
MAX_SAN_ENTRIES: Final = 8
MAX_LABEL_LENGTH: Final = 64
MAX_APPLIANCE_ID_LENGTH: Final = 63  # one DNS label (RFC 1035)
MAX_SECRET_LENGTH: Final = 128

# Keys the issuance policy accepts, and what their requests may be signed with
MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192
MAX_RSA_EXPONENT_BITS: Final = 32  # 65537 is 17 bits; a huge exponent makes each signature check slow
# A request's signature hash ("SHA-256 or stronger"): SHA-1, MD5 and SHA-224 are refused before the
# signature is checked; Ed25519 signs without a separate hash.
MIN_SIGNATURE_HASH_BITS: Final = 256

# Connections (seconds)
TLS_HANDSHAKE_TIMEOUT: Final = 10.0
HEADER_TIMEOUT: Final = 10.0  # the request line and headers must arrive within this
BODY_TIMEOUT: Final = 15.0  # the whole body must arrive within this
KEEPALIVE_TIMEOUT: Final = 15.0  # an idle connection is closed after this
LINGER_TIMEOUT: Final = 2.0  # after an early refusal (413, 408), drain an unread body this long at most
MAX_CONNECTIONS: Final = 64  # each holds a socket and ~0.4 MB of TLS buffers; see ConnectionGuard


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The listener's connection bounds as one value: production runs the defaults, tests shrink them."""

    tls_handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    linger_timeout: float = LINGER_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


DEFAULT_CONNECTION_LIMITS: Final = ConnectionLimits()

# Owner approval
PENDING_MAX: Final = 64  # pending first-enrollment requests overall
PENDING_MAX_PER_IDENTITY: Final = 4  # distinct keys one identity may have waiting
PENDING_MAX_PER_ADDRESS: Final = 8  # pending requests from one source address
PENDING_TTL: Final = 24 * 3600.0  # a request nobody approved is forgotten after this
PENDING_IDLE_TTL: Final = 15 * 60.0  # ... or after the appliance stopped retrying this long
RETRY_AFTER_PENDING: Final = 5  # seconds an appliance waits between polls while pending
# Seconds the owner's dialog (or `approve --pin`) waits for the appliance's next PIN exchange after
# the owner typed its PIN: several of its retries. Then the PIN waits for the appliance's return.
EXCHANGE_WAIT: Final = 30.0
REJECTED_MAX: Final = 1024  # remembered rejections (identity + key)

# Wrong secrets
FREE_ATTEMPTS: Final = 5  # wrong secrets before an identity is locked
LOCKOUT_BASE: Final = 60.0  # first lockout; doubles with every further wrong secret
LOCKOUT_MAX: Final = 3600.0  # at most one guess an hour once locked: 10^6 guesses take a century
FAILURE_MEMORY: Final = 24 * 3600.0  # a quiet day forgives earlier wrong secrets
GLOBAL_FAILURES_PER_MINUTE: Final = 60  # wrong secrets across all identities before everyone waits
OWNER_PIN_ATTEMPTS: Final = 3  # wrong PINs typed by the owner before the pairing flow stops

# The PIN exchange (SRP-6a): each open exchange holds a few KB and cost the hub a modular exponentiation
PAKE_SESSION_TTL: Final = 60.0  # seconds from an exchange's start to its finish
PAKE_SESSIONS_MAX: Final = 32  # exchanges between start and finish, overall
PAKE_SESSIONS_PER_ADDRESS: Final = 4  # ... from one source address
# The SRP worker process that runs them (and every PIN-to-verifier and PIN-against-verifier check)
SRP_WORKER_IDLE: Final = 60.0  # seconds without a request before the worker process stops
SRP_WORKER_QUEUE: Final = 32  # requests waiting for it at once; more are refused as busy (503)
SRP_WORKER_TIMEOUT: Final = 10.0  # seconds one request may take (a step takes 1-50 ms) before it is stopped

# Certificates
DEFAULT_VALIDITY_DAYS: Final = 365
MAX_VALID_CERTIFICATES: Final = 2  # per appliance: the one in use and its renewal while it switches over
# A certificate that came from a renewal renews once this fraction of its lifetime has passed (429
# before): appliances renew at two thirds, and one renewal right after enrolling stays free.
RENEWED_RENEWAL_FRACTION: Final = 0.25
# The longest TLS server certificate Apple platforms accept, even from a CA the user installed.
MAX_SERVER_AUTH_DAYS: Final = 825
CA_VALIDITY_DAYS: Final = 20 * 365 + 5
LISTENER_VALIDITY_DAYS: Final = 397
LISTENER_RENEW_BEFORE_DAYS: Final = 30
CRL_VALIDITY_DAYS: Final = 7
