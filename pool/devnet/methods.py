"""The devnet's RPC methods, with bitcoind's names, parameters, result fields and error
codes. Each handler is named after its method."""

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pool.bitcoin.address import address_to_script_pubkey
from pool.bitcoin.block import Block
from pool.bitcoin.script import parse_witness_script
from pool.bitcoin.target import bits_to_difficulty, bits_to_target
from pool.devnet import precheck
from pool.devnet.chain import IndexEntry
from pool.devnet.rpc import (
    RPC_DESERIALIZATION_ERROR,
    RPC_INVALID_ADDRESS_OR_KEY,
    RPC_INVALID_PARAMETER,
    RPC_VERIFY_ERROR,
    Method,
    Param,
)
from pool.errors import AddressError, DeserializationError, RPCError

if TYPE_CHECKING:
    from pool.devnet.node import Devnet

CLIENT_VERSION = 290000  # reported as bitcoind's version: the RPC shapes follow Core 29
SUBVERSION = "/gridpool-devnet:0.1.0/"
PROTOCOL_VERSION = 70016
LONGPOLL_MEMPOOL_WAIT = 60.0  # s; bitcoind answers a longpoll for new transactions after 1 min
LONGPOLL_CHECK = 10.0  # s; then re-checks the mempool this often
DEFAULT_MAX_TRIES = 1_000_000  # generatetoaddress's default maxtries
NETWORK_HASHPS_BLOCKS = 120  # blocks; getmininginfo's networkhashps window (bitcoind's default)


def _parse_hash(value: str, name: str) -> bytes:
    """bitcoind's ParseHashV: 64 hex chars in display order → internal bytes."""
    if len(value) != 64:
        raise RPCError(
            RPC_INVALID_PARAMETER, f"{name} must be of length 64 (not {len(value)}, for '{value}')"
        )
    try:
        return bytes.fromhex(value)[::-1]
    except ValueError:
        raise RPCError(
            RPC_INVALID_PARAMETER, f"{name} must be hexadecimal string (not '{value}')"
        ) from None


def _decode_hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise RPCError(RPC_DESERIALIZATION_ERROR, f"{what} decode failed") from None


class DevnetRpc:
    """Handlers for one Devnet."""

    def __init__(self, devnet: "Devnet") -> None:
        self.devnet = devnet
        self.chain = devnet.chain

    def _entry(self, blockhash: str) -> IndexEntry:
        entry = self.chain.by_hash(_parse_hash(blockhash, "blockhash"))
        if entry is None:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        return entry

    def _header_json(self, entry: IndexEntry) -> dict[str, Any]:
        header = entry.header
        result: dict[str, Any] = {
            "hash": entry.hash_hex,
            "confirmations": self.chain.height - entry.height + 1,
            "height": entry.height,
            "version": header.version,
            "versionHex": f"{header.version & 0xFFFFFFFF:08x}",
            "merkleroot": header.merkle_root_le[::-1].hex(),
            "time": header.time,
            "mediantime": entry.median_time_past,
            "nonce": header.nonce,
            "bits": f"{header.bits:08x}",
            "target": f"{bits_to_target(header.bits):064x}",
            "difficulty": bits_to_difficulty(header.bits),
            "chainwork": f"{entry.chainwork:064x}",
            "nTx": entry.n_tx,
        }
        if entry.height > 0:
            result["previousblockhash"] = header.prev_hash_le[::-1].hex()
        following = self.chain.at_height(entry.height + 1)
        if following is not None:
            result["nextblockhash"] = following.hash_hex
        return result

    # -- blockchain ------------------------------------------------------------------

    async def getblockchaininfo(self) -> dict[str, Any]:
        tip = self.chain.tip
        return {
            "chain": "regtest",
            "blocks": tip.height,
            "headers": tip.height,
            "bestblockhash": tip.hash_hex,
            "bits": f"{tip.header.bits:08x}",
            "target": f"{bits_to_target(tip.header.bits):064x}",
            "difficulty": bits_to_difficulty(tip.header.bits),
            "time": tip.header.time,
            "mediantime": tip.median_time_past,
            "verificationprogress": 1,
            "initialblockdownload": False,
            "chainwork": f"{tip.chainwork:064x}",
            "size_on_disk": _dir_size(self.devnet.datadir / "blocks"),
            "pruned": False,
            "warnings": [],
        }

    async def getbestblockhash(self) -> str:
        return self.chain.tip.hash_hex

    async def getblockcount(self) -> int:
        return self.chain.height

    async def getblockhash(self, height: int) -> str:
        entry = self.chain.at_height(height)
        if entry is None:
            raise RPCError(RPC_INVALID_PARAMETER, "Block height out of range")
        return entry.hash_hex

    async def getblockheader(self, blockhash: str, verbose: bool | None) -> Any:
        entry = self._entry(blockhash)
        if verbose is False:
            return entry.header.serialize().hex()
        return self._header_json(entry)

    async def getblock(self, blockhash: str, verbosity: int | bool | None) -> Any:
        entry = self._entry(blockhash)
        level = 1 if verbosity is None else int(verbosity)
        if level not in (0, 1):
            raise RPCError(RPC_INVALID_PARAMETER, "The devnet supports verbosity 0 and 1 only")
        raw = await self.chain.read_block(entry.hash_le)
        if raw is None:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Block not found")
        if level == 0:
            return raw.hex()
        block = Block.parse(raw)
        stripped = len(block.serialize(with_witness=False))
        result = self._header_json(entry)
        result.update(
            size=len(raw),
            strippedsize=stripped,
            weight=stripped * 3 + len(raw),
            tx=[tx.txid_hex() for tx in block.txs],
        )
        return result

    # -- mining ----------------------------------------------------------------------

    async def getblocktemplate(self, template_request: dict | None) -> Any:
        request = template_request or {}
        mode = request.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise RPCError(RPC_INVALID_PARAMETER, "Invalid mode")
        if mode == "proposal":
            return await self._proposal(request.get("data"))
        if mode not in (None, "template"):
            raise RPCError(RPC_INVALID_PARAMETER, "Invalid mode")
        longpollid = request.get("longpollid")
        if longpollid is not None:
            await self._longpoll(longpollid)
        rules = request.get("rules")
        if not isinstance(rules, list) or "segwit" not in rules:
            raise RPCError(
                RPC_INVALID_PARAMETER,
                "getblocktemplate must be called with the segwit rule set "
                '(call with {"rules": ["segwit"]})',
            )
        return self.devnet.block_template_json()

    async def _longpoll(self, longpollid: Any) -> None:
        """BIP22 long polling: return when the tip changes, or once the mempool has changed
        after LONGPOLL_MEMPOOL_WAIT (then every LONGPOLL_CHECK), as bitcoind does."""
        assert self.devnet.mempool is not None
        watched = str(longpollid)[:64] if isinstance(longpollid, str) else self.chain.tip.hash_hex
        if watched != self.chain.tip.hash_hex:
            return
        updates = self.devnet.mempool.updates
        if isinstance(longpollid, str):
            with contextlib.suppress(ValueError):
                updates = int(longpollid[64:])
        wait = LONGPOLL_MEMPOOL_WAIT
        while self.chain.tip.hash_hex == watched:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.devnet.next_tip_change().wait()
            if self.devnet.mempool.updates != updates:
                return
            wait = LONGPOLL_CHECK

    async def _proposal(self, data: Any) -> str | None:
        if not isinstance(data, str):
            raise RPCError(-3, "Missing data String key for proposal")
        raw = _decode_hex(data, "Block")
        try:
            block = Block.parse(raw)
        except DeserializationError:
            raise RPCError(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
        if self.chain.by_hash(block.header.hash_le()) is not None:
            return "duplicate"
        mempool = self.devnet.mempool
        assert mempool is not None
        known = {
            txid: precheck.KnownTx(e.fee_sats, frozenset(e.parents))
            for txid, e in mempool.entries.items()
        }
        tip = self.chain.tip
        ctx = precheck.Context(
            tip.hash_le, tip.height + 1, tip.median_time_past, tip.header.bits, int(time.time())
        )
        reason = precheck.check_block(block, ctx, known, check_pow=False)
        if reason in (None, "inconclusive"):
            mode = await self.chain.check_block(raw, check_pow=False)
            if mode.name != "VALID":
                return "rejected"
        return reason

    async def submitblock(self, hexdata: str, dummy: Any) -> str | None:
        raw = _decode_hex(hexdata, "Block")
        try:
            outcome = await self.devnet.submit_block(raw)
        except DeserializationError:
            raise RPCError(RPC_DESERIALIZATION_ERROR, "Block decode failed") from None
        if outcome.error is not None:
            raise RPCError(RPC_VERIFY_ERROR, outcome.error)
        return outcome.reason

    async def getmininginfo(self) -> dict[str, Any]:
        tip = self.chain.tip
        mempool = self.devnet.mempool
        assert mempool is not None
        bits = tip.header.bits
        return {
            "blocks": tip.height,
            "bits": f"{bits:08x}",
            "difficulty": bits_to_difficulty(bits),
            "target": f"{bits_to_target(bits):064x}",
            "networkhashps": self._network_hashps(),
            "pooledtx": len(mempool),
            "blockmintxfee": 0.00000001,
            "chain": "regtest",
            "next": {
                "height": tip.height + 1,
                "bits": f"{bits:08x}",
                "difficulty": bits_to_difficulty(bits),
                "target": f"{bits_to_target(bits):064x}",
            },
            "warnings": [],
        }

    def _network_hashps(self) -> float:
        """bitcoind's GetNetworkHashPS over the last 120 blocks: work / elapsed time."""
        tip = self.chain.tip
        first = self.chain.at_height(max(0, tip.height - NETWORK_HASHPS_BLOCKS))
        if first is None or first.height == tip.height:
            return 0
        window = (self.chain.at_height(h) for h in range(first.height, tip.height + 1))
        times = [entry.header.time for entry in window if entry is not None]
        elapsed = max(times) - min(times)
        return 0 if elapsed <= 0 else (tip.chainwork - first.chainwork) / elapsed

    async def generatetoaddress(
        self, nblocks: int, address: str, maxtries: int | None
    ) -> list[str]:
        try:
            address_to_script_pubkey(address, "regtest")
        except AddressError:
            raise RPCError(RPC_INVALID_ADDRESS_OR_KEY, "Error: Invalid address") from None
        return await self.devnet.generate(nblocks, address)

    # -- network, util, control ------------------------------------------------------

    async def getnetworkinfo(self) -> dict[str, Any]:
        return {
            "version": CLIENT_VERSION,
            "subversion": SUBVERSION,
            "protocolversion": PROTOCOL_VERSION,
            "localservices": "0000000000000000",
            "localservicesnames": [],
            "localrelay": False,
            "timeoffset": 0,
            "networkactive": False,
            "connections": 0,
            "connections_in": 0,
            "connections_out": 0,
            "networks": [],
            "relayfee": 0.00001,
            "incrementalfee": 0.00001,
            "localaddresses": [],
            "warnings": [],
        }

    async def validateaddress(self, address: str) -> dict[str, Any]:
        try:
            spk = address_to_script_pubkey(address, "regtest")
        except AddressError as err:
            return {"isvalid": False, "error_locations": [], "error": str(err)}
        result: dict[str, Any] = {
            "isvalid": True,
            "address": address,
            "scriptPubKey": spk.hex(),
            "isscript": spk[0] == 0xA9 or (spk[0] == 0x00 and len(spk) == 34),
            "iswitness": False,
        }
        witness = parse_witness_script(spk)
        if witness is not None:
            result.update(
                iswitness=True, witness_version=witness[0], witness_program=witness[1].hex()
            )
        return result

    async def getrawmempool(self, verbose: bool | None, mempool_sequence: bool | None) -> Any:
        mempool = self.devnet.mempool
        assert mempool is not None
        if not verbose:
            return [txid[::-1].hex() for txid in mempool.entries]
        return {
            txid[::-1].hex(): {
                "vsize": e.vsize,
                "weight": e.weight,
                "height": mempool.tip_height,
                "fees": {"base": e.fee_sats / 1e8, "modified": e.fee_sats / 1e8},
                "depends": [p[::-1].hex() for p in e.parents],
                "spentby": [c[::-1].hex() for c in e.children if c in mempool.entries],
                "wtxid": e.wtxid_le[::-1].hex(),
            }
            for txid, e in mempool.entries.items()
        }

    async def getmempoolinfo(self) -> dict[str, Any]:
        mempool = self.devnet.mempool
        assert mempool is not None
        return {
            "loaded": True,
            "size": len(mempool),
            "bytes": sum(e.vsize for e in mempool.entries.values()),
            "total_fee": sum(e.fee_sats for e in mempool.entries.values()) / 1e8,
        }

    async def getzmqnotifications(self) -> list[dict[str, Any]]:
        endpoint = self.devnet.zmq_endpoint
        if not endpoint:
            return []
        return [
            {"type": f"pub{topic}", "address": endpoint, "hwm": 1000}
            for topic in ("hashblock", "rawblock")
        ]

    async def uptime(self) -> int:
        return self.devnet.uptime

    async def stop(self) -> str:
        self.devnet.request_stop()
        return "gridpool devnet stopping"


def _dir_size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return 0


_STR, _INT, _BOOL, _OBJ = (str,), (int,), (bool,), (dict,)


def rpc_methods(devnet: "Devnet") -> dict[str, Method]:
    """The method table served by the devnet's JSON-RPC server."""
    h = DevnetRpc(devnet)
    table = [
        Method("getblockchaininfo", h.getblockchaininfo),
        Method("getbestblockhash", h.getbestblockhash),
        Method("getblockcount", h.getblockcount),
        Method("getblockhash", h.getblockhash, (Param("height", _INT, True),)),
        Method(
            "getblockheader",
            h.getblockheader,
            (Param("blockhash", _STR, True), Param("verbose", _BOOL)),
        ),
        Method(
            "getblock",
            h.getblock,
            (Param("blockhash", _STR, True), Param("verbosity", (int, bool))),
        ),
        Method("getblocktemplate", h.getblocktemplate, (Param("template_request", _OBJ),)),
        Method(
            "submitblock",
            h.submitblock,
            (Param("hexdata", _STR, True), Param("dummy", (str, int, bool, dict, list))),
        ),
        Method("getmininginfo", h.getmininginfo),
        Method(
            "generatetoaddress",
            h.generatetoaddress,
            (Param("nblocks", _INT, True), Param("address", _STR, True), Param("maxtries", _INT)),
        ),
        Method("getnetworkinfo", h.getnetworkinfo),
        Method("validateaddress", h.validateaddress, (Param("address", _STR, True),)),
        Method(
            "getrawmempool",
            h.getrawmempool,
            (Param("verbose", _BOOL), Param("mempool_sequence", _BOOL)),
        ),
        Method("getmempoolinfo", h.getmempoolinfo),
        Method("getzmqnotifications", h.getzmqnotifications),
        Method("uptime", h.uptime),
        Method("stop", h.stop),
    ]
    return {m.name: m for m in table}
