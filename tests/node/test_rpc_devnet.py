"""RPCClient against the embedded devnet, which answers like bitcoind: cookie and
user/password auth, templates with the segwit rule, bitcoind's error objects."""

import socket
import time

import pytest
import structlog

from pool.devnet import Devnet
from pool.errors import NodeAuthError, NodeError, RPCError
from pool.node.rpc import RPCClient

PASSWORD = "rpc-Pass-9f8e7d"


async def test_cookie_auth_blockchaininfo_and_template(devnet: Devnet) -> None:
    async with RPCClient(devnet.rpc_url, cookie_path=devnet.cookie_path, name="dev") as client:
        info = await client.call("getblockchaininfo")
        assert info["chain"] == "regtest" and info["blocks"] == devnet.chain.height
        assert await client.call("getbestblockhash") == info["bestblockhash"]
        await devnet.wait_for_mempool(50)
        template = await client.call("getblocktemplate", {"rules": ["segwit"]})
        assert template["previousblockhash"] == info["bestblockhash"]
        assert template["height"] == info["blocks"] + 1
        assert len(template["transactions"]) >= 50
        assert template["default_witness_commitment"].startswith("6a24aa21a9ed")
        header = await client.call("getblockheader", info["bestblockhash"], True)
        assert header["height"] == info["blocks"]


async def test_rpc_error_objects_carry_bitcoind_codes(devnet: Devnet) -> None:
    async with RPCClient(devnet.rpc_url, cookie_path=devnet.cookie_path) as client:
        with pytest.raises(RPCError) as info:
            await client.call("getblocktemplate", {})  # no "rules": bitcoind refuses (-8)
        assert info.value.code == -8 and "segwit" in info.value.message
        with pytest.raises(RPCError) as info:
            await client.call("nosuchmethod")
        assert info.value.code == -32601
        with pytest.raises(RPCError) as info:
            await client.call("getblockhash", 10**6)
        assert info.value.code == -8
        with pytest.raises(RPCError) as info:
            await client.call("submitblock", "00" * 40)
        assert info.value.code == -22 and info.value.message == "Block decode failed"


async def test_user_password_and_wrong_password(make_devnet) -> None:  # type: ignore[no-untyped-def]
    devnet = await make_devnet(rpc_user="pool", rpc_password=PASSWORD, mempool_target=0)
    async with RPCClient(devnet.rpc_url, auth=("pool", PASSWORD)) as client:
        assert (await client.call("getblockchaininfo"))["chain"] == "regtest"
    wrong = "x" + PASSWORD
    with structlog.testing.capture_logs() as logs:
        async with RPCClient(devnet.rpc_url, auth=("pool", wrong), name="bad") as client:
            with pytest.raises(NodeAuthError, match="bad auth") as info:
                await client.call("getblockchaininfo")
    assert wrong not in str(info.value) and PASSWORD not in str(info.value)
    assert wrong not in repr(logs)


async def test_unreachable_port_fails_quickly(devnet: Devnet) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with RPCClient(f"http://127.0.0.1:{port}", cookie_path=devnet.cookie_path,
                         timeout_s=10) as client:
        started = time.monotonic()
        with pytest.raises(NodeError, match="unreachable"):
            await client.call("getblockchaininfo")
        assert time.monotonic() - started < 1.0
