"""The devnet's own keys and signing: P2WPKH (BIP143), P2PKH (legacy sighash) and
P2WSH with an OP_TRUE witness script (no signature, like Core's MiniWallet).

One secp256k1 key, kept in the data dir so that a restart still owns its coins. ECDSA
comes from coincurve (libsecp256k1: RFC6979 nonces, low-S signatures).
"""

import enum
import hashlib
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

import coincurve

from pool.bitcoin.hashes import hash160, sha256d
from pool.bitcoin.script import p2pkh_script, p2wpkh_script, p2wsh_script, push_data
from pool.bitcoin.tx import Transaction, TxIn, TxOut

KEY_FILE_NAME = "devnet_wallet.key"  # hex secret, one line
SIGHASH_ALL = 0x01
OP_TRUE_SCRIPT = b"\x51"  # the P2WSH witness script: leaves a single true on the stack
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class CoinKind(enum.Enum):
    """How the devnet spends an output it owns."""

    P2WPKH = "p2wpkh"
    P2PKH = "p2pkh"
    P2WSH_OP_TRUE = "p2wsh_op_true"


# Spend sizes for fee estimation: (non-witness bytes, witness bytes) per input, with a
# 72-byte DER signature + sighash byte; bytes per output by kind.
INPUT_SIZES = {
    CoinKind.P2WPKH: (41, 1 + 1 + 73 + 1 + 33),
    CoinKind.P2PKH: (41 + 1 + 73 + 1 + 33, 1),
    CoinKind.P2WSH_OP_TRUE: (41, 1 + 1 + 1),
}
OUTPUT_SIZES = {CoinKind.P2WPKH: 31, CoinKind.P2PKH: 34, CoinKind.P2WSH_OP_TRUE: 43}
TX_OVERHEAD = (10, 2)  # version, counts, locktime; segwit marker+flag


@dataclass(slots=True)
class Coin:
    """An output the devnet can spend. `height` None while its transaction is unconfirmed."""

    txid_le: bytes
    index: int
    value_sats: int
    kind: CoinKind
    height: int | None = None
    is_coinbase: bool = False

    @property
    def outpoint(self) -> tuple[bytes, int]:
        return self.txid_le, self.index


class Wallet:
    """Holds the key and the three script templates; signs whole transactions."""

    def __init__(self, secret: bytes) -> None:
        self._key = coincurve.PrivateKey(secret)
        self.pubkey = self._key.public_key.format(compressed=True)
        pubkey_hash = hash160(self.pubkey)
        self.scripts = {
            CoinKind.P2WPKH: p2wpkh_script(pubkey_hash),
            CoinKind.P2PKH: p2pkh_script(pubkey_hash),
            CoinKind.P2WSH_OP_TRUE: p2wsh_script(hashlib.sha256(OP_TRUE_SCRIPT).digest()),
        }
        self._kind_by_script = {spk: kind for kind, spk in self.scripts.items()}
        self._p2wpkh_code = b"\x19" + p2pkh_script(pubkey_hash)  # BIP143 scriptCode

    @classmethod
    def load_or_create(cls, datadir: Path) -> "Wallet":
        """The key in `datadir`, created (mode 0600) on first use."""
        path = datadir / KEY_FILE_NAME
        if path.exists():
            return cls(bytes.fromhex(path.read_text().strip()))
        secret = secrets.token_bytes(32)
        path.touch(mode=0o600)
        path.write_text(secret.hex() + "\n")
        return cls(secret)

    def kind_of(self, script_pubkey: bytes) -> CoinKind | None:
        return self._kind_by_script.get(script_pubkey)

    def sign(self, tx: Transaction, coins: list[Coin]) -> None:
        """Fill scriptSig/witness of every input; coins[i] is what input i spends."""
        bip143 = _Bip143Hashes(tx)
        for i, coin in enumerate(coins):
            txin = tx.inputs[i]
            if coin.kind is CoinKind.P2WSH_OP_TRUE:
                txin.witness = [OP_TRUE_SCRIPT]
            elif coin.kind is CoinKind.P2WPKH:
                digest = bip143.digest(i, self._p2wpkh_code, coin.value_sats)
                txin.witness = [self._signature(digest), self.pubkey]
            else:
                digest = legacy_sighash(tx, i, self.scripts[CoinKind.P2PKH])
                txin.script_sig = push_data(self._signature(digest)) + push_data(self.pubkey)

    def _signature(self, digest: bytes) -> bytes:
        return self._key.sign(digest, hasher=None) + bytes((SIGHASH_ALL,))


class _Bip143Hashes:
    """BIP143's per-transaction midstate (hashPrevouts, hashSequence, hashOutputs)."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.prevouts = sha256d(
            b"".join(i.prev_txid_le + _U32.pack(i.prev_index) for i in tx.inputs)
        )
        self.sequences = sha256d(b"".join(_U32.pack(i.sequence) for i in tx.inputs))
        self.outputs = sha256d(b"".join(o.serialize() for o in tx.outputs))

    def digest(self, index: int, script_code: bytes, value_sats: int) -> bytes:
        txin = self.tx.inputs[index]
        return sha256d(
            _U32.pack(self.tx.version)
            + self.prevouts
            + self.sequences
            + txin.prev_txid_le
            + _U32.pack(txin.prev_index)
            + script_code
            + _U64.pack(value_sats)
            + _U32.pack(txin.sequence)
            + self.outputs
            + _U32.pack(self.tx.locktime)
            + _U32.pack(SIGHASH_ALL)
        )


def legacy_sighash(tx: Transaction, index: int, script_code: bytes) -> bytes:
    """Pre-segwit SIGHASH_ALL digest: every scriptSig emptied except input `index`, which
    carries the spent script; witness left out."""
    inputs = [
        TxIn(i.prev_txid_le, i.prev_index, script_code if n == index else b"", i.sequence)
        for n, i in enumerate(tx.inputs)
    ]
    outputs = [TxOut(o.value_sats, o.script_pubkey) for o in tx.outputs]
    copy = Transaction(tx.version, inputs, outputs, tx.locktime)
    return sha256d(copy.serialize(with_witness=False) + _U32.pack(SIGHASH_ALL))
