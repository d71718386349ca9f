"""The appliance side and the command lines of EST Appliance Pairing; not part of the Home Assistant install.

``appliance/`` is the reference appliance for appliance makers (docs/appliance-profile.md) and the
simulator's command line; ``standalone/`` is the EST server without Home Assistant. Both use the hub's
protocol library under its one import name, ``custom_components.est_pairing.est``.
"""
