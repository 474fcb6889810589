"""Fixtures shared by every test directory."""

pytest_plugins = ["helpers.gateway_fixtures"]
