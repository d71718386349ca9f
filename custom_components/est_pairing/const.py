"""Constants for the EST Appliance Pairing integration."""

from __future__ import annotations

from typing import Final

DOMAIN: Final = "est_pairing"
NAME: Final = "EST Appliance Pairing"

CONF_CA_NAME: Final = "ca_name"
CONF_PORT: Final = "port"

DEFAULT_PORT: Final = 8443
