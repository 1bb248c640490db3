"""Following found blocks on the chain: found → submitted → confirmed, or orphaned.

`block_state` (pure) decides from the node's view: the tip height and the best chain's hash
at the block's height. In the chain with COINBASE_MATURITY confirmations → confirmed
(its coinbase is spendable); in the chain with fewer → submitted; another block at its
height → orphaned. A block whose height the chain has not reached keeps its status. An
orphaned block that comes back (a reorg back to its branch) returns to submitted/confirmed
— the ledger re-applies its balance effects then, as it reverts them when orphaned.

`BlockTracker.update()` applies it to every block still in play; the pool calls it on each
new tip (NodeSet.on_new_tip) with any `rpc_call(method, *params)` coroutine function, e.g.
`RPCClient.call`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from pool.errors import LedgerError, NodeError, RPCError
from pool.ledger.store import CONFIRMED, FOUND, ORPHANED, SUBMITTED, BlockInfo, Ledger

log = structlog.get_logger(__name__)

COINBASE_MATURITY = 100  # confirmations before a coinbase may be spent (consensus)
RECHECK_BLOCKS = 500  # newest unsettled blocks examined per update
UPDATE_TIMEOUT_S = 60.0  # deadline of one update (RPC calls and ledger writes) (s)
RPC_INVALID_PARAMETER = -8  # bitcoind: getblockhash height out of range

RpcCall = Callable[..., Awaitable[Any]]


def block_state(
    *, height: int, hash_hex: str, status: str, tip_height: int, hash_at_height: str | None,
    maturity: int = COINBASE_MATURITY,
) -> tuple[str, int]:
    """(status, confirmations) of a tracked block given the node's best chain."""
    if hash_at_height is None or tip_height < height:
        return status, 0  # the chain has not reached it: nothing new to say
    if hash_at_height != hash_hex:
        return ORPHANED, 0
    confirmations = tip_height - height + 1
    if confirmations >= maturity:
        return CONFIRMED, confirmations
    return SUBMITTED, confirmations


@dataclass(frozen=True, slots=True)
class BlockChange:
    hash_hex: str
    height: int
    old_status: str
    status: str
    confirmations: int


class BlockTracker:
    """Moves the ledger's blocks along as the chain grows or reorganizes."""

    def __init__(
        self,
        ledger: Ledger,
        rpc_call: RpcCall,
        *,
        maturity: int = COINBASE_MATURITY,
        recheck_blocks: int = RECHECK_BLOCKS,
        timeout_s: float = UPDATE_TIMEOUT_S,
    ) -> None:
        self.ledger = ledger
        self.rpc_call = rpc_call
        self.maturity = maturity
        self.recheck_blocks = recheck_blocks
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()  # tips can arrive faster than an update runs

    async def on_new_tip(self, _best_hash_hex: str) -> None:
        """NodeSet.on_new_tip callback: update, logging (not raising) a failure — the next
        tip retries."""
        try:
            await self.update()
        except (NodeError, LedgerError, TimeoutError) as err:
            log.warning("block_tracking_failed", error=str(err))

    async def update(self) -> list[BlockChange]:
        async with self._lock, asyncio.timeout(self.timeout_s):
            blocks = await self.ledger.blocks(
                limit=self.recheck_blocks, status=[FOUND, SUBMITTED, ORPHANED]
            )
            if not blocks:
                return []
            tip_height = int(await self.rpc_call("getblockcount"))
            hashes: dict[int, str | None] = {}
            changes = []
            for block in blocks:
                if block.status == ORPHANED and tip_height - block.height >= self.maturity:
                    continue  # buried under a mature competitor: settled for good
                if block.height not in hashes:
                    hashes[block.height] = await self._hash_at(block.height, tip_height)
                change = await self._apply(block, tip_height, hashes[block.height])
                if change is not None:
                    changes.append(change)
            return changes

    async def _hash_at(self, height: int, tip_height: int) -> str | None:
        if height > tip_height:
            return None
        try:
            return str(await self.rpc_call("getblockhash", height))
        except RPCError as err:
            if err.code == RPC_INVALID_PARAMETER:  # the tip moved down meanwhile
                return None
            raise

    async def _apply(
        self, block: BlockInfo, tip_height: int, hash_at_height: str | None
    ) -> BlockChange | None:
        status, confirmations = block_state(
            height=block.height, hash_hex=block.hash_hex, status=block.status,
            tip_height=tip_height, hash_at_height=hash_at_height, maturity=self.maturity,
        )
        if (status, confirmations) == (block.status, block.confirmations):
            return None
        await self.ledger.set_block_status(block.hash_hex, status, confirmations)
        if status != block.status:
            event = {ORPHANED: "block_orphaned", CONFIRMED: "block_confirmed"}.get(
                status, "block_status")
            logger = log.warning if status == ORPHANED else log.info
            logger(event, hash=block.hash_hex, height=block.height, old=block.status,
                   status=status, confirmations=confirmations)
        return BlockChange(block.hash_hex, block.height, block.status, status, confirmations)
