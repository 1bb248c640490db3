"""Simulated miners: a real Stratum V1 client (stratum_client), power models, management APIs,
a fleet runner, and the Stratum load generator (loadgen)."""
