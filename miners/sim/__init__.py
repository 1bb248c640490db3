"""Simulated miners: a real Stratum V1 client (stratum_client), power models, management APIs."""
