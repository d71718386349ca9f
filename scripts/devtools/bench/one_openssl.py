"""The two-OpenSSLs experiment's handshake in ``cryptography``'s own OpenSSL, through pyOpenSSL.

What one OpenSSL for both the TLS and the CSR checks would do: the same handshake as
:class:`two_openssls.Handshakes`, in the copy of OpenSSL that ``cryptography``'s wheel links in (and
pyOpenSSL binds). pyOpenSSL is a dependency of Home Assistant 2025.4 that newer releases no longer
require; ``scripts/bench --two-openssls`` leaves this part out where it is not installed.
"""

from __future__ import annotations

from cryptography import x509
from OpenSSL import SSL, crypto

from .two_openssls import complete_handshake, experiment_identity

_BIO_READ = 1 << 16


class SameLibraryHandshakes:
    """TLS handshakes in memory, both sides in ``cryptography``'s OpenSSL.

    The listener's settings as far as they bear on the work: TLS 1.2 and later, no session tickets,
    its certificate and the household CA sent whole, a client certificate asked for (optional); the
    client checks the server's chain against the household CA.
    """

    def __init__(self) -> None:
        ca, identity = experiment_identity()
        server = SSL.Context(SSL.TLS_SERVER_METHOD)
        server.set_min_proto_version(SSL.TLS1_2_VERSION)
        server.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
        server.use_certificate(identity.certificate)
        server.add_extra_chain_cert(ca.certificate)
        server.use_privatekey(identity.private_key)
        server.set_verify(SSL.VERIFY_PEER)  # asks; a client without a certificate is not refused
        _trust(server, ca.certificate)
        client = SSL.Context(SSL.TLS_CLIENT_METHOD)
        client.set_verify(SSL.VERIFY_PEER)
        _trust(client, ca.certificate)
        self._server, self._client = server, client

    def run(self) -> SSL.Connection:
        """One full handshake; returns the server's side of it."""
        server, client = SSL.Connection(self._server, None), SSL.Connection(self._client, None)
        server.set_accept_state()
        client.set_connect_state()

        def exchange() -> None:
            _pass_on(client, server)
            _pass_on(server, client)

        complete_handshake((client, server), SSL.WantReadError, exchange)
        return server


def _trust(context: SSL.Context, certificate: x509.Certificate) -> None:
    store = context.get_cert_store()
    if store is None:  # pyOpenSSL's type allows it; a context made here always has a store
        raise RuntimeError("the pyOpenSSL context has no certificate store")
    store.add_cert(crypto.X509.from_cryptography(certificate))


def _pass_on(sender: SSL.Connection, receiver: SSL.Connection) -> None:
    """What ``sender`` wrote to its memory BIO, into ``receiver``'s."""
    try:
        data = sender.bio_read(_BIO_READ)
    except SSL.WantReadError:
        return
    receiver.bio_write(data)
