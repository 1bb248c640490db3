"""End-to-end fixtures: the Stratum harness (tests/stratum/harness.py) and the devnet."""

from stratum.harness import client_factory, pool_factory

__all__ = ["client_factory", "pool_factory"]
