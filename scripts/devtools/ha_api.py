"""A small client for a running Home Assistant's REST API: onboarding, login, config flows.

Used by scripts/develop (onboarding with a local owner account) and by the end-to-end checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

CLIENT_ID = "http://127.0.0.1:8123/"


@dataclass
class Owner:
    """The local owner account scripts/develop creates."""

    name: str
    username: str
    password: str


class HomeAssistantApi:
    """REST calls against one Home Assistant."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.token: str | None = None

    async def wait_until_up(self, patience: float = 300.0) -> None:
        """Poll until the HTTP server answers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            try:
                async with self.session.get(f"{self.base_url}/api/onboarding") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"Home Assistant did not answer at {self.base_url}")
            await asyncio.sleep(1)

    async def onboard(self, owner: Owner) -> bool:
        """Create the owner and finish onboarding; False when it was done already."""
        async with self.session.get(f"{self.base_url}/api/onboarding") as response:
            steps = {step["step"]: step["done"] for step in await response.json()}
        if steps.get("user"):
            return False
        auth_code = (
            await self._post(
                "/api/onboarding/users",
                {
                    "client_id": CLIENT_ID,
                    "name": owner.name,
                    "username": owner.username,
                    "password": owner.password,
                    "language": "en",
                },
                auth=False,
            )
        )["auth_code"]
        await self._token({"grant_type": "authorization_code", "code": auth_code})
        for step in ("core_config", "analytics"):
            if not steps.get(step, True):
                await self._post(f"/api/onboarding/{step}", {})
        if not steps.get("integration", True):
            await self._post(
                "/api/onboarding/integration", {"client_id": CLIENT_ID, "redirect_uri": CLIENT_ID}
            )
        return True

    async def login(self, owner: Owner) -> None:
        """Log in through the login flow, as the frontend does."""
        flow = await self._post(
            "/auth/login_flow",
            {"client_id": CLIENT_ID, "handler": ["homeassistant", None], "redirect_uri": CLIENT_ID},
            auth=False,
        )
        result = await self._post(
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": CLIENT_ID, "username": owner.username, "password": owner.password},
            auth=False,
        )
        await self._token({"grant_type": "authorization_code", "code": result["result"]})

    async def remove_failed_entries(self, domains: set[str]) -> list[str]:
        """Delete config entries of these domains that failed to set up; returns their titles."""
        removed = []
        for entry in await self.get("/api/config/config_entries/entry"):
            if entry["domain"] in domains and entry["state"] in {"setup_error", "setup_retry"}:
                async with self.session.delete(
                    f"{self.base_url}/api/config/config_entries/entry/{entry['entry_id']}",
                    headers=self._headers(),
                ) as response:
                    response.raise_for_status()
                removed.append(entry["title"])
        return removed

    async def get(self, path: str) -> Any:
        """GET a JSON resource."""
        async with self.session.get(f"{self.base_url}{path}", headers=self._headers()) as response:
            response.raise_for_status()
            return await response.json()

    async def post(self, path: str, data: dict[str, Any]) -> Any:
        """POST JSON, authenticated."""
        return await self._post(path, data)

    async def _post(self, path: str, data: dict[str, Any], *, auth: bool = True) -> Any:
        headers = self._headers() if auth else {}
        async with self.session.post(f"{self.base_url}{path}", json=data, headers=headers) as response:
            if response.status >= 400:
                raise RuntimeError(f"POST {path}: {response.status} {await response.text()}")
            return await response.json()

    async def _token(self, form: dict[str, str]) -> None:
        async with self.session.post(
            f"{self.base_url}/auth/token", data={**form, "client_id": CLIENT_ID}
        ) as response:
            response.raise_for_status()
            self.token = (await response.json())["access_token"]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}
