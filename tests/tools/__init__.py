"""Tests of est_tools: the reference appliance and the standalone server, as their users run them."""
