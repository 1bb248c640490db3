"""Stratum test fixtures: see harness.py."""

from stratum.harness import client_factory, pool_factory

__all__ = ["client_factory", "pool_factory"]
