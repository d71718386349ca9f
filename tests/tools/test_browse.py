"""Locating a server: what an appliance makes of a hub's announcement and QR payload, URLs, choosing one.

Browsing itself multicasts, so it is exercised only inside a private network namespace
(tests/e2e/test_mdns_pairing.py).
"""

from __future__ import annotations

import re

import pytest
from zeroconf.asyncio import AsyncServiceInfo

from custom_components.est_pairing.est.discovery import qr_payload, service_info, txt_properties
from est_tools.appliance.browse import (
    EstServer,
    candidate_servers,
    server_from_qr_payload,
    server_from_service_info,
    server_from_url,
)

FINGERPRINT = "ab" * 32


def announcement(addresses: list[str], **properties: str) -> EstServer | None:
    """What a browser makes of an announcement with these addresses and TXT values."""
    info = AsyncServiceInfo(
        "_est._tcp.local.",
        "Home Household CA._est._tcp.local.",
        port=8443,
        properties={**txt_properties(FINGERPRINT), **properties},
        server="ha.local.",
        parsed_addresses=addresses,
    )
    return server_from_service_info(info)


def test_the_announcement_carries_where_and_which_ca() -> None:
    info = service_info(
        "Home Household CA", port=8443, ca_fingerprint=FINGERPRINT, server="ha.local.", addresses=["10.0.0.2"]
    )
    assert info.type == "_est._tcp.local."
    assert info.name == "Home Household CA._est._tcp.local."
    assert info.properties == {
        b"path": b"/.well-known/est",
        b"cafp": FINGERPRINT.encode(),
        b"ver": b"1",
        b"pake": b"srp6a-sha512-3072",  # the PIN exchange is offered: an appliance sends its PIN no other way
    }
    assert all(len(value or b"") < 255 for value in info.properties.values())
    assert server_from_service_info(info) == EstServer(
        "Home Household CA", "https://10.0.0.2:8443", None, FINGERPRINT, pake_methods=("srp6a-sha512-3072",)
    )


@pytest.mark.parametrize(
    ("addresses", "properties", "expected"),
    [
        (["fe80::1", "10.0.0.2"], {}, ("https://10.0.0.2:8443", None, FINGERPRINT)),  # IPv4 first
        (["fd00::2"], {}, ("https://[fd00::2]:8443", None, FINGERPRINT)),
        (["fe80::1"], {}, None),  # a link-local address needs a zone index no URL can carry
        (["10.0.0.2"], {"ver": "2"}, None),  # a profile this client does not know
        (
            ["10.0.0.2"],
            {"path": "/.well-known/est/appliance"},
            ("https://10.0.0.2:8443", "appliance", FINGERPRINT),
        ),
        (["10.0.0.2"], {"path": "/somewhere/else"}, None),
        (["10.0.0.2"], {"cafp": "not hex"}, ("https://10.0.0.2:8443", None, None)),  # only ever a hint
    ],
)
def test_what_a_browser_makes_of_announcements(
    addresses: list[str], properties: dict[str, str], expected: tuple[str, str | None, str | None] | None
) -> None:
    server = announcement(addresses, **properties)
    if expected is None:
        assert server is None
    else:
        assert server is not None
        assert (server.base_url, server.label, server.ca_fingerprint) == expected


@pytest.mark.parametrize(
    ("properties", "methods"),
    [
        ({"pake": ""}, ()),  # none announced (a hub from before it): the appliance asks GET .../pake
        ({}, ("srp6a-sha512-3072",)),
        ({"pake": "spake2plus,srp6a-sha512-3072"}, ("spake2plus", "srp6a-sha512-3072")),
    ],
)
def test_an_announcement_lists_the_pin_exchange_methods_it_offers(
    properties: dict[str, str], methods: tuple[str, ...]
) -> None:
    server = announcement(["10.0.0.2"], **properties)
    assert server is not None and server.pake_methods == methods


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("192.168.1.2", "https://192.168.1.2:8443"),
        ("fd00::2", "https://[fd00::2]:8443"),
        ("ha.local", "https://ha.local:8443"),
    ],
)
def test_qr_payload_round_trip(host: str, url: str) -> None:
    payload = qr_payload(host, 8443, FINGERPRINT)
    assert payload.startswith("est://") and payload.endswith(f"/.well-known/est?sha256={FINGERPRINT}")
    assert server_from_qr_payload(payload) == EstServer(url, url, None, FINGERPRINT, out_of_band=True)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param(
            f"https://192.168.1.2:8443/.well-known/est?sha256={FINGERPRINT}",
            "a QR payload looks like est://HOST:PORT/.well-known/est?sha256=FINGERPRINT",
            id="not est://",
        ),
        pytest.param(
            f"est://192.168.1.2/.well-known/est?sha256={FINGERPRINT}",
            "a QR payload looks like est://HOST:PORT/.well-known/est?sha256=FINGERPRINT",
            id="no port",
        ),
        pytest.param(
            "est://192.168.1.2:8443/.well-known/est",
            "the QR payload carries no single sha256= CA fingerprint",
            id="no fingerprint",
        ),
        pytest.param(
            "est://192.168.1.2:8443/.well-known/est?sha256=1234",
            "a CA fingerprint is 64 hexadecimal digits (SHA-256)",
            id="not a SHA-256",
        ),
        pytest.param(
            f"est://192.168.1.2:8443/elsewhere?sha256={FINGERPRINT}",
            "the EST path is /.well-known/est or /.well-known/est/LABEL",
            id="not the EST path",
        ),
    ],
)
def test_malformed_qr_payloads_are_refused(payload: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        server_from_qr_payload(payload)


def test_server_urls() -> None:
    assert server_from_url("https://10.0.0.2:8443") == EstServer(
        "https://10.0.0.2:8443", "https://10.0.0.2:8443"
    )
    assert server_from_url("https://10.0.0.2:8443/.well-known/est/appliance/").label == "appliance"
    for bad, reason in [
        ("http://10.0.0.2:8443", "the server URL looks like https://HOST:PORT"),
        ("10.0.0.2:8443", "the server URL looks like https://HOST:PORT"),
        ("https://10.0.0.2:99999", "the server URL looks like https://HOST:PORT"),
        ("https://hub.local:abc", "the server URL looks like https://HOST:PORT"),
        ("https://10.0.0.2:8443/api", "the EST path is /.well-known/est or /.well-known/est/LABEL"),
    ]:
        with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
            server_from_url(bad)


HOME = EstServer("Home", "https://10.0.0.2:8443", None, FINGERPRINT)
CABIN = EstServer("Cabin", "https://10.0.0.3:8443", None, "cd" * 32)


IMPOSTOR = EstServer("A Household CA", "https://10.0.0.9:8443", None, FINGERPRINT)  # copies Home's hint


@pytest.mark.parametrize(
    ("servers", "expected_fingerprint", "candidates"),
    [
        ([], None, []),
        ([HOME], None, [HOME]),
        ([HOME], "cd" * 32, [HOME]),  # the announcement is only a hint: the bootstrap decides
        ([HOME, CABIN], None, []),  # no reason to prefer either: the user must choose
        ([HOME, CABIN], "cd" * 32, [CABIN, HOME]),
        # Anyone can announce the fingerprint: every server announcing it is tried, then the rest.
        ([IMPOSTOR, CABIN, HOME], FINGERPRINT, [IMPOSTOR, HOME, CABIN]),
    ],
)
def test_candidate_servers(
    servers: list[EstServer], expected_fingerprint: str | None, candidates: list[EstServer]
) -> None:
    assert candidate_servers(servers, expected_fingerprint) == candidates
