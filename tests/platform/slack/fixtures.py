"""Pytest fixtures for the Slack tier (the local Slack emulator); registered in tests/conftest.py."""
