"""Cross-package tests share btkit's own pytest fixtures (btkit.testing)."""

pytest_plugins = ["btkit.testing"]
