"""Shared test setup. Its presence puts tests/ on sys.path, so test files can import cli_helpers."""
