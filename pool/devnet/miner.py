"""Mining for the devnet itself (generatetoaddress): a block from a getblocktemplate
result, built the way a pool builds one, with the nonce ground by hashlib.

On regtest the target is 0x7fffff << 232, so about every other nonce wins.
"""

import struct

from pool.bitcoin.block import BlockHeader, serialize_block
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import merkle_root
from pool.bitcoin.script import WITNESS_RESERVED_VALUE, bip34_height_push, push_data
from pool.bitcoin.tx import NULL_INDEX, NULL_TXID_LE, Transaction, TxIn, TxOut
from pool.errors import DevnetError

COINBASE_TAG = b"/gridpool-devnet/"  # pushed after the BIP34 height
MAX_NONCE = 0xFFFFFFFF
_U32 = struct.Struct("<I")


def build_coinbase(
    *, height: int, value_sats: int, script_pubkey: bytes, commitment_script: bytes
) -> Transaction:
    """BIP34 height + tag in the scriptSig, one payout, the BIP141 commitment output and
    the 32-byte zero witness reserved value."""
    script_sig = bip34_height_push(height) + push_data(COINBASE_TAG)
    coinbase_in = TxIn(NULL_TXID_LE, NULL_INDEX, script_sig, witness=[WITNESS_RESERVED_VALUE])
    outputs = [TxOut(value_sats, script_pubkey), TxOut(0, commitment_script)]
    return Transaction(version=2, inputs=[coinbase_in], outputs=outputs, locktime=0)


def grind(header: BlockHeader, target: int) -> BlockHeader:
    """The header with the first nonce whose hash is at or below `target`."""
    prefix = header.serialize()[:76]
    for nonce in range(MAX_NONCE + 1):
        hash_le = sha256d(prefix + _U32.pack(nonce))
        if int.from_bytes(hash_le, "little") <= target:
            header.nonce = nonce
            return header
    raise DevnetError("no nonce below target; bump the time and retry")


def block_from_template(template: dict, script_pubkey: bytes, *, time: int | None = None) -> bytes:
    """A solved block carrying every template transaction, paying coinbasevalue to
    `script_pubkey`."""
    height = template["height"]
    coinbase = build_coinbase(
        height=height,
        value_sats=template["coinbasevalue"],
        script_pubkey=script_pubkey,
        commitment_script=bytes.fromhex(template["default_witness_commitment"]),
    )
    txids_le = [coinbase.txid_le()] + [
        bytes.fromhex(t["txid"])[::-1] for t in template["transactions"]
    ]
    header = BlockHeader(
        version=template["version"],
        prev_hash_le=bytes.fromhex(template["previousblockhash"])[::-1],
        merkle_root_le=merkle_root(txids_le),
        time=template["curtime"] if time is None else time,
        bits=int(template["bits"], 16),
        nonce=0,
    )
    header = grind(header, int(template["target"], 16))
    tx_datas = [coinbase.serialize()] + [bytes.fromhex(t["data"]) for t in template["transactions"]]
    return serialize_block(header.serialize(), tx_datas)
