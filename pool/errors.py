"""The pool package's exception tree. Boundaries convert these into Stratum error codes,
HTTP statuses with a reason, or config errors naming the key."""


class PoolError(Exception):
    """Base of every error the pool package raises on purpose."""


class ConfigError(PoolError):
    """A configuration value is missing or invalid; the message names the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class HashBackendError(PoolError):
    """A hash backend was requested that this build or CPU cannot provide."""


class BitcoinError(PoolError):
    """Base for malformed Bitcoin data (serialization, scripts, addresses)."""


class DeserializationError(BitcoinError):
    """Bytes do not parse as the expected Bitcoin structure (truncated, trailing, oversized)."""


class AddressError(BitcoinError):
    """A string is not a valid address for the requested chain; the message says why."""


class NodeError(PoolError):
    """bitcoind (or the devnet) could not be reached or answered with an error."""


class RPCError(NodeError):
    """A JSON-RPC call returned an error object; `code` is bitcoind's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"RPC error {code}: {message}")
        self.code = code
        self.message = message


class NodeUnreachableError(NodeError):
    """The node's RPC port refused or dropped the connection (or DNS failed)."""


class NodeAuthError(NodeError):
    """The node answered HTTP 401/403: wrong user/password, stale cookie or rpcallowip."""


class NodeTimeoutError(NodeError):
    """An RPC call did not complete within its deadline."""


class DevnetError(PoolError):
    """The embedded regtest devnet could not start (data dir, ports) or was misused."""


class TemplateError(NodeError):
    """getblocktemplate returned a template the pool cannot use (missing or malformed field)."""


class LedgerError(PoolError):
    """The share/block ledger refused or failed an operation (bad data, broken invariant)."""


class LedgerUnavailableError(LedgerError):
    """The ledger's database cannot be reached or written right now (connection lost,
    server down, database locked, disk error); the operation may succeed later."""


class LedgerBusyError(LedgerError):
    """The share recorder cannot accept a share in time (queue full, journal full or the
    deadline passed); the share was NOT acknowledged and must not be reported accepted."""


class ApiError(PoolError):
    """An HTTP API request the pool refuses; `pool.web` turns it into a JSON error body
    `{"error": code, "message": …, "field": …}` with HTTP `status` (400/422 name the
    field, 401/403 say why the credentials do not suffice, 404 names what is unknown)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class WorkGateError(PoolError):
    """A work gate call the pool refuses: a worker name that is no Stratum username, or
    a full gate (pool.workgate)."""
