"""Fixtures of the operations tests: a running pool (tests/ops/running.py)."""

from ops.running import running_pool

__all__ = ["running_pool"]
