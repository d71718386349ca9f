"""The PIN exchange over HTTP, the appliance's side: pair before trusting any CA.

Its messages go over TLS that verifies nothing unless the appliance already knows the CA to expect
(the exchange does not rely on TLS) and carry no credentials: what they say proves the PIN without
revealing it, and the CA the appliance pins comes from the hub's last answer, authenticated by the
exchange (``pake_client.ApplianceExchange``, docs/appliance-profile.md section 12).
"""

from __future__ import annotations

from typing import Self

import aiohttp
from cryptography import x509

from custom_components.est_pairing.est.errors import ProtocolError
from custom_components.est_pairing.est.pake import MEDIA_TYPE, OPERATION, encode, parse_offer
from custom_components.est_pairing.est.srp6a import METHOD
from custom_components.est_pairing.est.wire import EST_PATH, media_type

from .client import Pending, checked_body, client_ssl_context, error_for, pending_answer
from .pake_client import ApplianceExchange, Paired

_NOT_OFFERED = frozenset({404, 405})  # what a hub without the exchange answers


class PinExchangeClient:
    """Talks the exchange to one server: whether it offers it, and one attempt at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        label: str | None = None,
        trust: x509.Certificate | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}{EST_PATH}" + (f"/{label}" if label else "") + f"/{OPERATION}"
        self._trust = trust  # a CA the owner vouched for, or pinned earlier: TLS must verify against it
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(ssl=client_ssl_context(self._trust))
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use PinExchangeClient in 'async with'")
        return self._session

    async def offered(self) -> bool:
        """Whether the server offers this exchange (``GET .../pake`` lists it).

        Anything but an offer means no, a refusal asking for credentials included; only a server that
        is busy or failing (``429``, ``5xx``) raises, to be asked again.
        """
        async with self._open().get(self.url) as response:
            if response.status == 429 or response.status >= 500:
                raise error_for(response, await response.text(errors="replace"))
            if response.status != 200 or media_type(response.headers.get("Content-Type")) != MEDIA_TYPE:
                return False
            try:
                return METHOD in parse_offer(await response.read())
            except ProtocolError:
                return False

    async def attempt(self, exchange: ApplianceExchange) -> Paired | Pending:
        """One exchange: the CA and certificate, or Pending (the hub waits for the owner's PIN).

        Raises the library's errors: AuthenticationRequired (PairingProofFailed) when the hub found
        the proof wrong, HubProofFailed when the hub's proof or answer is wrong, and the others a
        refusal maps to.
        """
        answer = await self._send(await exchange.start_async())
        if isinstance(answer, Pending):
            return answer
        proved = await self._answer(await exchange.answer_async(answer))
        finished = await self._answer(exchange.confirm(proved))
        return exchange.conclude(finished)

    async def _answer(self, message: dict[str, str]) -> bytes:
        answer = await self._send(message)
        if isinstance(answer, Pending):
            raise ProtocolError("the hub answered 202 in the middle of a PIN exchange")
        return answer

    async def _send(self, message: dict[str, str]) -> bytes | Pending:
        async with self._open().post(
            self.url, data=encode(message), headers={"Content-Type": MEDIA_TYPE}
        ) as response:
            if response.status == 202:
                return await pending_answer(response)
            if response.status in _NOT_OFFERED:
                raise ProtocolError(f"{response.status}: the hub does not offer the PIN exchange (any more)")
            return await checked_body(response, MEDIA_TYPE)
