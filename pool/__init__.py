"""gridpool's pool: Stratum V1 server, bitcoind interface, share validation and accounting."""

__version__ = "0.1.0"
