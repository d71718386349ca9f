"""Tests for EST Appliance Pairing."""
