"""Fixtures shared by every tier; platform fixtures live beside their tests."""

pytest_plugins = [
    "tests.platform.slack.fixtures",
    "tests.platform.matrix.fixtures",
]
