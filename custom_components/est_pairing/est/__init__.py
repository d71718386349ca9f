"""EST (RFC 7030) appliance enrollment with a household CA; never imports Home Assistant.

Runs inside the Home Assistant integration and on its own (``python -m est.cli`` with this package's
parent directory on ``sys.path``), so it can be lifted out as a library unchanged.
"""
