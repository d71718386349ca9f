"""The hub's side of EST (RFC 7030) appliance enrollment with a household CA; never imports Home Assistant.

Runs inside the Home Assistant integration and on its own (``python -m est_tools.standalone``, which
imports it without loading Home Assistant), so it can be lifted out as a library unchanged.
"""
