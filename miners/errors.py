"""The miners package's exception tree (drivers, inventory, allocation, control).

Boundaries convert these: the admin API into an HTTP status with the message as the
reason, the CLI into one line on stderr, the controller into a command result and an
audit event. Configuration mistakes raise `pool.errors.ConfigError(key, reason)` like the
rest of the configuration, so one error names one dotted key everywhere.
"""


class MinerError(Exception):
    """Base of every error the miners package raises on purpose."""


class DriverError(MinerError):
    """A management API call failed; `miner_id` says which miner, `command` what was asked."""

    def __init__(self, miner_id: str, command: str, reason: str) -> None:
        super().__init__(f"{miner_id}: {command}: {reason}")
        self.miner_id = miner_id
        self.command = command
        self.reason = reason


class MinerUnreachableError(DriverError):
    """The management API refused or dropped the connection (host down, port closed)."""


class MinerTimeoutError(DriverError):
    """The management API did not answer within the call's deadline."""


class MinerProtocolError(DriverError):
    """The answer was not what the firmware's API returns (bad JSON, missing fields, too big)."""


class MinerCommandError(DriverError):
    """The firmware answered with an error status; `code` is its status code when it has one."""

    def __init__(self, miner_id: str, command: str, reason: str, code: int | None = None):
        super().__init__(miner_id, command, reason)
        self.code = code


class MinerSessionError(MinerCommandError):
    """A privileged command was refused: no session could be opened or the session was lost."""


class UnsupportedCommandError(DriverError):
    """The driver (or the firmware behind it) cannot do this, e.g. sleep on a read-only API."""


class DriverUnavailableError(MinerError):
    """A driver's optional dependency is missing (e.g. pyasic for the pyasic adapter)."""


class InventoryError(MinerError):
    """An inventory file or scan result is unusable; the message names the entry."""


class AllocationError(MinerError, ValueError):
    """The allocator was given impossible input (negative budget, inverted power range)."""


class UnknownSiteError(MinerError, KeyError):
    """A budget or status request named a site this controller does not manage."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown site"


class BudgetError(MinerError, ValueError):
    """A site budget is not a finite, non-negative number of watts within the allowed range."""


class MeterError(MinerError):
    """A site meter read failed (no connection, timeout, Modbus exception, impossible value);
    `site` says which meter."""

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(f"meter {site}: {reason}")
        self.site = site
        self.reason = reason
