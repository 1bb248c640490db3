"""Issue item 3: the RPC's shape. Template fields and types as bitcoind documents them,
bitcoind's error codes and HTTP statuses, envelopes, batches and authentication."""

import asyncio
import base64
import re

import aiohttp

from pool.bitcoin.hashes import sha256d
from pool.bitcoin.script import witness_commitment, witness_commitment_script
from pool.bitcoin.tx import Transaction
from pool.devnet.auth import basic_auth_header

HEX64 = re.compile(r"^[0-9a-f]{64}$")
SUBSIDY = 50 * 100_000_000  # satoshis at heights below 150 on regtest


def _check_template_types(tmpl: dict) -> None:
    expected = {
        "capabilities": list, "version": int, "rules": list, "vbavailable": dict,
        "vbrequired": int, "previousblockhash": str, "transactions": list,
        "coinbaseaux": dict, "coinbasevalue": int, "longpollid": str, "target": str,
        "mintime": int, "mutable": list, "noncerange": str, "sigoplimit": int,
        "sizelimit": int, "weightlimit": int, "curtime": int, "bits": str, "height": int,
        "default_witness_commitment": str,
    }  # fmt: skip
    assert set(tmpl) == set(expected)
    for key, kind in expected.items():
        assert isinstance(tmpl[key], kind) and not isinstance(tmpl[key], bool), key
    assert HEX64.match(tmpl["previousblockhash"]) and HEX64.match(tmpl["target"])
    assert re.match(r"^[0-9a-f]{8}$", tmpl["bits"])
    tx_keys = {"data", "txid", "hash", "depends", "fee", "sigops", "weight"}
    for position, tx in enumerate(tmpl["transactions"], start=1):
        assert set(tx) == tx_keys
        assert HEX64.match(tx["txid"]) and HEX64.match(tx["hash"])
        assert all(isinstance(d, int) and 1 <= d < position for d in tx["depends"])
        assert all(isinstance(tx[k], int) and tx[k] >= 0 for k in ("fee", "sigops", "weight"))


async def test_template_matches_bitcoind_fields(devnet, rpc) -> None:
    tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    _check_template_types(tmpl)
    tip = await rpc.call("getblockheader", await rpc.call("getbestblockhash"))
    assert tmpl["capabilities"] == ["proposal"]
    assert tmpl["version"] == 0x20000000  # no deployment signalling below height 144
    assert tmpl["rules"] == ["csv", "!segwit", "taproot"]
    assert (tmpl["vbavailable"], tmpl["vbrequired"], tmpl["coinbaseaux"]) == ({}, 0, {})
    assert tmpl["previousblockhash"] == tip["hash"] and tmpl["height"] == tip["height"] + 1
    assert tmpl["target"] == "7fffff" + "0" * 58 and tmpl["bits"] == "207fffff"
    assert tmpl["mintime"] == tip["mediantime"] + 1 <= tmpl["curtime"]
    assert tmpl["mutable"] == ["time", "transactions", "prevblock"]
    assert tmpl["noncerange"] == "00000000ffffffff"
    assert (tmpl["sigoplimit"], tmpl["sizelimit"], tmpl["weightlimit"]) == (
        80_000,
        4_000_000,
        4_000_000,
    )
    assert tmpl["longpollid"].startswith(tip["hash"])

    txs = tmpl["transactions"]
    assert len(txs) == 200
    assert tmpl["coinbasevalue"] == SUBSIDY + sum(t["fee"] for t in txs)
    parsed = [Transaction.parse(bytes.fromhex(t["data"])) for t in txs]
    for tx, entry in zip(parsed, txs, strict=True):
        assert (tx.txid_hex(), tx.wtxid_hex(), tx.weight()) == (
            entry["txid"],
            entry["hash"],
            entry["weight"],
        )
    assert any(tx.has_witness() for tx in parsed) and any(not tx.has_witness() for tx in parsed)
    assert len({t["fee"] * 4 // t["weight"] for t in txs}) > 20  # varied fee rates
    wtxids = [bytes(32)] + [bytes.fromhex(t["hash"])[::-1] for t in txs]
    assert (
        tmpl["default_witness_commitment"]
        == witness_commitment_script(witness_commitment(wtxids)).hex()
    )


async def test_template_requires_segwit_rule(devnet, rpc) -> None:
    for params in ((), ({},), ({"rules": []},)):
        status, error = await rpc.error("getblocktemplate", params)
        assert (status, error["code"]) == (500, -8)
        assert "segwit rule set" in error["message"]
    status, error = await rpc.error("getblocktemplate", ({"mode": "bogus", "rules": ["segwit"]},))
    assert (error["code"], error["message"]) == (-8, "Invalid mode")


async def test_errors_have_bitcoind_codes_and_statuses(devnet, rpc) -> None:
    assert await rpc.error("nosuchmethod") == (404, {"code": -32601, "message": "Method not found"})
    assert await rpc.error("nosuchmethod", version="2.0") == (
        200,
        {"code": -32601, "message": "Method not found"},
    )
    status, error = await rpc.error("getblockhash")  # missing argument: usage, RPC_MISC_ERROR
    assert (status, error["code"]) == (500, -1) and error["message"].startswith("getblockhash")
    status, error = await rpc.error("getblockhash", ("1",))
    assert (status, error["code"]) == (500, -3)
    status, error = await rpc.error("getblockhash", (10**6,))
    assert (error["code"], error["message"]) == (-8, "Block height out of range")
    status, error = await rpc.error("getblockhash", {"heigth": 1})
    assert (error["code"], error["message"]) == (-8, "Unknown named parameter heigth")
    status, error = await rpc.error("getblockheader", ("00" * 31,))
    assert error["code"] == -8 and "must be of length 64" in error["message"]
    status, error = await rpc.error("getblockheader", ("11" * 32,))
    assert (error["code"], error["message"]) == (-5, "Block not found")
    status, error = await rpc.error("generatetoaddress", (1, "bc1qnotanaddress"))
    assert (error["code"], error["message"]) == (-5, "Error: Invalid address")
    status, error = await rpc.error("getblock", ("11" * 32, 1), version="2.0")
    assert (status, error["code"]) == (200, -5)


async def test_envelopes_batches_and_http_details(devnet, rpc) -> None:
    status, reply, _ = await rpc.post({"jsonrpc": "2.0", "id": "a", "method": "getblockcount"})
    assert (status, reply) == (200, {"jsonrpc": "2.0", "result": devnet.chain.height, "id": "a"})
    status, reply, _ = await rpc.post({"id": 7, "method": "getblockcount", "params": []})
    assert (status, reply) == (200, {"result": devnet.chain.height, "error": None, "id": 7})
    status, reply, _ = await rpc.post({"jsonrpc": "2.0", "method": "getblockcount"})  # notification
    assert (status, reply) == (204, None)
    status, reply, _ = await rpc.post(
        [
            {"id": 1, "method": "getblockcount"},
            {"id": 2, "method": "nope"},
            {"jsonrpc": "2.0", "method": "uptime"},
        ]
    )
    assert status == 200 and [r["id"] for r in reply] == [1, 2]
    assert reply[0]["result"] == devnet.chain.height and reply[1]["error"]["code"] == -32601
    status, reply, _ = await rpc.post({"id": 1, "params": []})
    assert (status, reply["error"]["code"]) == (400, -32600)
    async with rpc.session.post(
        rpc.url, data=b"{not json", headers={"Authorization": rpc.auth}
    ) as resp:
        assert (resp.status, (await resp.json())["error"]["code"]) == (500, -32700)
    async with rpc.session.get(rpc.url, headers={"Authorization": rpc.auth}) as resp:
        assert resp.status == 405


async def test_bad_auth_is_401(devnet, rpc) -> None:
    for auth in ("", "Basic " + base64.b64encode(b"__cookie__:wrong").decode(), "Bearer x"):
        async with rpc.session.post(
            rpc.url, json={"id": 1, "method": "uptime"}, headers={"Authorization": auth}
        ) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == 'Basic realm="jsonrpc"'
    async with rpc.session.post(rpc.url, json={"id": 1, "method": "uptime"}) as resp:
        assert resp.status == 401
    assert devnet.cookie_path.read_text().startswith("__cookie__:")
    assert devnet.cookie_path.stat().st_mode & 0o777 == 0o600


async def test_user_password_and_stop(make_devnet) -> None:
    devnet = await make_devnet(rpc_user="alice", rpc_password="s3cret", mempool_target=0)
    body = {"jsonrpc": "2.0", "id": 1, "method": "stop"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            devnet.rpc_url, json=body, headers={"Authorization": basic_auth_header("alice:s3cret")}
        ) as resp:
            assert (resp.status, (await resp.json())["result"]) == (200, "gridpool devnet stopping")
    await devnet.stopped.wait()
    assert not devnet.cookie_path.exists()


async def test_chain_queries(devnet, rpc) -> None:
    info = await rpc.call("getblockchaininfo")
    assert (info["chain"], info["blocks"], info["headers"]) == ("regtest", 110, 110)
    best = await rpc.call("getbestblockhash")
    assert info["bestblockhash"] == best == await rpc.call("getblockhash", 110)
    assert (
        await rpc.call("getblockhash", 0)
        == "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    )
    header_hex = await rpc.call("getblockheader", best, False)
    assert sha256d(bytes.fromhex(header_hex))[::-1].hex() == best
    header = await rpc.call("getblockheader", best, True)
    assert (header["height"], header["confirmations"], header["nTx"]) == (110, 1, 1)
    block = await rpc.call("getblock", best)
    raw = bytes.fromhex(await rpc.call("getblock", best, 0))
    assert (
        raw[:80].hex() == header_hex and block["hash"] == best and block["nTx"] == len(block["tx"])
    )
    assert block["size"] == len(raw) and block["weight"] == 3 * block["strippedsize"] + len(raw)
    mining = await rpc.call("getmininginfo")
    assert (mining["blocks"], mining["pooledtx"], mining["chain"]) == (110, 200, "regtest")
    assert (await rpc.call("getnetworkinfo"))["version"] >= 290000
    assert len(await rpc.call("getrawmempool")) == 200
    assert isinstance(await rpc.call("uptime"), int)
    valid = await rpc.call("validateaddress", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
    assert valid["isvalid"] and valid["iswitness"] and valid["witness_version"] == 0
    assert (await rpc.call("validateaddress", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"))[
        "isvalid"
    ] is False
    hashes = await rpc.call("generatetoaddress", 2, "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")
    assert len(hashes) == 2 and await rpc.call("getbestblockhash") == hashes[-1]


async def test_template_version_bits_follow_regtest_testdummy(make_devnet) -> None:
    """bitcoind's regtest signals `testdummy` (bit 28) from the second 144-block period."""
    devnet = await make_devnet(mempool_target=0)
    await devnet.generate(142 - devnet.chain.height)
    assert devnet.block_template()["version"] == 0x20000000  # for height 143: period 0
    await devnet.generate(1)
    tmpl = devnet.block_template()  # for height 144: period 1, testdummy STARTED
    assert (tmpl["version"], tmpl["vbavailable"]) == (0x30000000, {"testdummy": 28})


async def test_longpoll_returns_on_new_tip(devnet, rpc) -> None:
    tmpl = await rpc.call("getblocktemplate", {"rules": ["segwit"]})
    request = {"rules": ["segwit"], "longpollid": tmpl["longpollid"]}
    waiting = asyncio.create_task(rpc.call("getblocktemplate", request))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # same tip, and the mempool wait is a minute
    [new_tip] = await devnet.generate(1)
    async with asyncio.timeout(10):
        assert (await waiting)["previousblockhash"] == new_tip
