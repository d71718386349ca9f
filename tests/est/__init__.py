"""Tests for the protocol library (no Home Assistant needed by the code under test)."""
