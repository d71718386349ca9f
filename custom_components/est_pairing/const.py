"""Constants for the EST Appliance Pairing integration."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

DOMAIN: Final = "est_pairing"
NAME: Final = "EST Appliance Pairing"

# Config entry data (set up and reconfigure) and options
CONF_CA_NAME: Final = "ca_name"
CONF_PORT: Final = "port"
CONF_VALIDITY_DAYS: Final = "validity_days"
CONF_RENEWAL_DAYS: Final = "renewal_days"
CONF_MANUFACTURER_CAS: Final = "manufacturer_cas"

DEFAULT_PORT: Final = 8443
DEFAULT_VALIDITY_DAYS: Final = 365
DEFAULT_RENEWAL_DAYS: Final = 30

# Appliances are config subentries of the hub
SUBENTRY_APPLIANCE: Final = "appliance"
CONF_APPLIANCE_ID: Final = "appliance_id"
# In the hub entry's data: the appliances that had a subentry when the entry was last written. It is
# saved with the subentries, so a subentry missing beside its mark was deleted by the owner.
CONF_APPLIANCES: Final = "appliances"
CONF_PIN: Final = "pin"
MIN_PIN_LENGTH: Final = 6  # a PIN the owner sets (pre-registration): the form and the action ask for as many
CONF_NAME: Final = "name"
# The owner's dialog while an appliance of the PIN exchange proves the PIN typed, then says how that
# went: it ends by itself when the request stops waiting, so that it can tell the owner why.
STEP_EXCHANGE: Final = "exchange"
STEP_EXCHANGE_DONE: Final = "exchange_done"

# Repair issues
ISSUE_PORT_UNAVAILABLE: Final = "port_unavailable"
ISSUE_CA_EXPIRING: Final = "ca_expiring"
ISSUE_LISTENER_NAMES: Final = "listener_names"
ISSUE_STORAGE_UNWRITABLE: Final = "storage_unwritable"
ISSUE_CA_MISSING: Final = "ca_missing"
CA_EXPIRY_WARNING: Final = timedelta(days=365)

# How often certificate states (valid -> expiring -> expired) and the network names are re-checked
UPKEEP_INTERVAL: Final = timedelta(hours=1)
