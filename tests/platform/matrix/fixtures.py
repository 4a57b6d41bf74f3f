"""Pytest fixtures for the Matrix tier (one real Synapse per session); registered in tests/conftest.py."""
