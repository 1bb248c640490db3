"""Hash functions Bitcoin uses, on bytes, via hashlib (never the native extension)."""

import hashlib

from pool.bitcoin import _ripemd160


def sha256(data: bytes) -> bytes:
    """Single SHA-256."""
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double SHA-256: txids, block hashes, merkle nodes, Base58Check checksums."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def ripemd160(data: bytes) -> bytes:
    """RIPEMD-160; OpenSSL 3 may lack it (legacy provider), so fall back to pure Python."""
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:
        return _ripemd160.ripemd160(data)


def hash160(data: bytes) -> bytes:
    """RIPEMD-160(SHA-256(data)): the hash in P2PKH, P2SH and P2WPKH scripts."""
    return ripemd160(hashlib.sha256(data).digest())


def tagged_hash(tag: str, msg: bytes) -> bytes:
    """BIP340 tagged hash: SHA-256(SHA-256(tag) || SHA-256(tag) || msg)."""
    tag_hash = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(tag_hash + tag_hash + msg).digest()
