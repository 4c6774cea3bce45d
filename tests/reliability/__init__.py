"""The reliability and security suite (see docs/RELIABILITY.md).

A package, so that its conftest and helpers import as `reliability.*` and never shadow the
`conftest` module of tests/ that other test files import from.
"""
