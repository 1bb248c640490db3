"""A reorg on the devnet: the blocks that leave the active chain take their transactions'
outputs with them, so the devnet must not keep spending them. Before the mempool was
rebuilt on a reorg, the next `generate` failed with bad-txns-inputs-missingorspent."""

from __future__ import annotations

from pool.bitcoin.block import BlockHeader, serialize_block
from pool.bitcoin.script import bip34_height_push, p2wpkh_script, push_data
from pool.bitcoin.tx import NULL_INDEX, NULL_TXID_LE, Transaction, TxIn, TxOut
from pool.devnet import Devnet
from pool.devnet.miner import grind


def coinbase_only_block(prev_hash_hex: str, height: int, block_time: int, template: dict) -> str:
    """Raw hex of a valid block holding only a coinbase, on any parent."""
    script_sig = bip34_height_push(height) + push_data(b"/reorg-test/")
    coinbase = Transaction(2, [TxIn(NULL_TXID_LE, NULL_INDEX, script_sig)],
                           [TxOut(1000, p2wpkh_script(bytes(20)))])
    header = BlockHeader(version=0x20000000, prev_hash_le=bytes.fromhex(prev_hash_hex)[::-1],
                         merkle_root_le=coinbase.txid_le(), time=block_time,
                         bits=int(template["bits"], 16), nonce=0)
    header = grind(header, int(template["target"], 16))
    return serialize_block(header.serialize(), [coinbase.serialize()]).hex()


async def test_reorg_drops_spends_of_disconnected_transactions(devnet: Devnet, rpc) -> None:
    await devnet.wait_for_mempool(200)
    template = devnet.block_template()
    height = template["height"]
    [hash_a] = await devnet.generate(1)  # A confirms the mempool's 200 transactions
    a_txids = set((await rpc.call("getblock", hash_a, 1))["tx"][1:])
    assert len(a_txids) == 200
    await devnet.wait_for_mempool(200)  # ... and new ones spend their outputs

    raw_b = coinbase_only_block(template["previousblockhash"], height, template["curtime"],
                                template)
    assert await rpc.call("submitblock", raw_b) == "inconclusive"  # a side branch so far
    hash_b = BlockHeader.parse(bytes.fromhex(raw_b)[:80]).hash_hex()
    raw_c = coinbase_only_block(hash_b, height + 1, template["curtime"] + 1, template)
    assert await rpc.call("submitblock", raw_c) is None  # B's branch is now the best chain
    assert devnet.chain.height == height + 1 and await rpc.call("getblockhash", height) == hash_b

    await devnet.wait_for_mempool(200)
    fresh = devnet.block_template()
    spent = {bytes.fromhex(tx["data"]) for tx in fresh["transactions"]}
    for raw_tx in spent:  # nothing in the new template spends what A's transactions made
        tx = Transaction.parse(raw_tx)
        assert not {txin.prev_txid_le[::-1].hex() for txin in tx.inputs} & a_txids
    [hash_d] = await devnet.generate(1)  # carries the rebuilt mempool: consensus-valid
    assert devnet.chain.tip.hash_hex == hash_d
    assert devnet.chain.tip.n_tx == 201
