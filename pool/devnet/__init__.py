"""Embedded regtest devnet: Bitcoin Core's consensus through py-bitcoinkernel, behind
bitcoind's JSON-RPC and ZMQ interfaces, with a self-made mempool. See docs/devnet.md."""

from pool.devnet.node import Devnet

__all__ = ["Devnet"]
