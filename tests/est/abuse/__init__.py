"""The named abuse table, run against a running ``est-server serve`` over real TLS.

``cases`` is the table, ``target`` reaches a server (requests, the owner's control socket, the
ledger file), ``run`` checks each case and gives its verdict; ``python -m tests.est.abuse`` (what
``scripts/abuse`` runs) prints a verdict per case, and tests/est/test_abuse.py runs the same table.
"""
