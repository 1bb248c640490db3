"""The bitcoind interface: JSON-RPC client, ZMQ hashblock subscriber and the failover set."""
