"""The standalone EST server: the hub's protocol library behind a command line, without Home Assistant."""
