"""Pure Bitcoin primitives: serialization, transactions, blocks, merkle trees, targets,
scripts, addresses and Stratum coinbase parts. Synchronous, no I/O, hashlib only.

Byte-order rule: names ending in `_le` hold internal byte order (as serialized); names
ending in `_hex` hold display hex (reversed, as bitcoind prints). See docs/bitcoin.md.
"""
