"""The reference appliance: EST client, certificate life cycle, key store, mDNS browsing, command line."""
