"""Who a mining.authorize username is, and which script its coinbase pays (pure).

- `<address>[.<worker>]`: solo mining; any address type of the configured chain (P2PKH,
  P2SH, P2WPKH, P2WSH, P2TR). The coinbase of that session's jobs pays the address.
- `<account>[.<worker>]`: pool mining; the coinbase pays the pool's `[payout] address`
  (per-account coinbase splits arrive with the ledger). Refused when no address is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pool.bitcoin.address import CHAINS, address_to_script_pubkey
from pool.errors import AddressError

MAX_USERNAME_CHARS = 128
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WORKER_RE = re.compile(r"[A-Za-z0-9_.:@+-]{0,64}")


class UsernameError(ValueError):
    """The username is not acceptable; the message says why (sent with error 24)."""


@dataclass(frozen=True, slots=True)
class Identity:
    username: str  # as the miner sent it; the worker name used in mining.submit
    account: str  # the address (solo) or the account name (pool)
    worker: str  # "" when none was given
    payout_script: bytes
    solo: bool


@dataclass(frozen=True, slots=True)
class PayoutPolicy:
    chain: str
    pool_script: bytes | None = None  # pays account usernames; None refuses them

    def identify(self, username: object) -> Identity:
        if not isinstance(username, str) or not username:
            raise UsernameError("username must be a non-empty string")
        if len(username) > MAX_USERNAME_CHARS:
            raise UsernameError(f"username longer than {MAX_USERNAME_CHARS} characters")
        account, _, worker = username.partition(".")
        if not _WORKER_RE.fullmatch(worker):
            raise UsernameError("worker name: up to 64 of A-Z a-z 0-9 _ . : @ + -")
        try:
            script = address_to_script_pubkey(account, self.chain)
        except AddressError as err:
            return self._account(username, account, worker, err)
        return Identity(username, account, worker, script, solo=True)

    def _account(self, username: str, account: str, worker: str, err: AddressError) -> Identity:
        other = self._other_chain(account)
        if other is not None:  # never pay the pool for a miner who typed a wrong address
            raise UsernameError(f"{account} is a {other} address; this pool mines {self.chain}")
        if self.pool_script is None:
            raise UsernameError(
                f"solo mining needs a {self.chain} address as username "
                f"(address or address.worker): {err}"
            )
        if not _ACCOUNT_RE.fullmatch(account):
            raise UsernameError(
                f"not a {self.chain} address ({err}) nor an account name "
                "(1-64 of A-Z a-z 0-9 _ -)"
            )
        return Identity(username, account, worker, self.pool_script, solo=False)

    def _other_chain(self, account: str) -> str | None:
        for chain in CHAINS:
            if chain != self.chain:
                try:
                    address_to_script_pubkey(account, chain)
                except AddressError:
                    continue
                return chain
        return None
