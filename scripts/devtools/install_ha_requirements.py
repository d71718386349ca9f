"""Install what Home Assistant would pip-install at start-up, so it can start without a network.

Home Assistant installs integration (and login-module) requirements on first use.
``scripts/develop --isolated`` runs it in a network namespace with no route out, so this asks Home
Assistant's own requirements manager to install them first: the default integrations, those
onboarding sets up, those in configuration.yaml, and this integration.

    python scripts/devtools/install_ha_requirements.py CONFIG_DIR [DOMAIN ...]
"""

from __future__ import annotations

import asyncio
import sys

from homeassistant import bootstrap, loader, requirements
from homeassistant.auth.mfa_modules import notify, totp
from homeassistant.core import HomeAssistant


async def install(config_dir: str, domains: set[str]) -> None:
    """Resolve every domain with its dependencies, installing missing requirements."""
    hass = HomeAssistant(config_dir)
    hass.config.skip_pip = False
    loader.async_setup(hass)
    try:
        await requirements.async_process_requirements(
            hass, "multi-factor authentication", [*totp.REQUIREMENTS, *notify.REQUIREMENTS]
        )
        for domain in sorted(domains):
            await requirements.async_get_integration_with_requirements(hass, domain)
    finally:
        await hass.async_stop(force=True)


# Onboarding sets these up (weather, radio, text-to-speech, shopping list).
ONBOARDING_INTEGRATIONS = {"met", "radio_browser", "google_translate", "shopping_list"}


def main() -> None:
    """Entry point."""
    config_dir, *extra = sys.argv[1:]
    domains = (
        ONBOARDING_INTEGRATIONS
        | bootstrap.CORE_INTEGRATIONS
        | bootstrap.DEFAULT_INTEGRATIONS
        | bootstrap.LOGGING_AND_HTTP_DEPS_INTEGRATIONS
        | bootstrap.FRONTEND_INTEGRATIONS
        | set(extra)
    )
    asyncio.run(install(config_dir, domains))
    print(f"install_ha_requirements: ready for {len(domains)} integrations")


if __name__ == "__main__":
    main()
