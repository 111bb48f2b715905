"""Shared test code, imported as `helpers` (pyproject.toml puts tests/ on pytest's `pythonpath`)."""
