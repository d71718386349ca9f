"""Tests of custom_components/, laid out as Home Assistant core lays out its own integrations' tests."""
