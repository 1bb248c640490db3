"""Issue item 4: a restart on the same data dir keeps the chain, and the mempool
regenerates from the coins the wallet finds by rescanning the stored blocks."""

from pool.devnet import Devnet


async def test_restart_keeps_chain_and_refills_mempool(tmp_path) -> None:
    datadir = tmp_path / "devnet"
    async with Devnet(datadir, rpc_port=0, zmq_port=0, mempool_target=150) as first:
        mined = await first.generate(3)  # carries the mempool: wallet coins move around
        await first.wait_for_mempool(150)
        height, tip = first.chain.height, first.chain.tip.hash_hex
        old_mempool = set(first.mempool.entries)
        first_wallet_key = first.wallet.pubkey
    assert height == 113 and tip == mined[-1]

    async with Devnet(datadir, rpc_port=0, zmq_port=0, mempool_target=150) as second:
        assert (second.chain.height, second.chain.tip.hash_hex) == (height, tip)
        assert second.wallet.pubkey == first_wallet_key
        assert [second.chain.at_height(h).hash_hex for h in (111, 112, 113)] == mined
        await second.wait_for_mempool(150)
        assert len(second.mempool) == 150
        assert not old_mempool & set(second.mempool.entries)  # made anew, not persisted
        # The regenerated transactions spend coins that really exist: the kernel accepts
        # a block carrying all of them.
        [block_hash] = await second.generate(1)
        assert second.chain.tip.hash_hex == block_hash
        assert second.chain.tip.n_tx == 151


async def test_two_devnets_side_by_side(make_devnet) -> None:
    a = await make_devnet(mempool_target=20)
    b = await make_devnet(mempool_target=20)
    assert a.rpc_url != b.rpc_url and a.zmq_endpoint != b.zmq_endpoint
    await a.generate(2)
    await b.generate(1)
    assert (a.chain.height, b.chain.height) == (112, 111)
    assert a.chain.at_height(1).hash_hex != b.chain.at_height(1).hash_hex
