"""Errors of the grid interface, under `miners.errors.MinerError`.

The HTTP command API turns each into a status (the class says which) with the message as
the reason; the OpenADR VEN turns a refused event into an opt-out with a reason.
"""

from miners.errors import MinerError


class GridError(MinerError):
    """Base of every error the grid interface raises on purpose."""

    status = 500


class GridAuthError(GridError):
    """A request is not signed by a known key: missing or malformed headers, unknown key,
    bad signature, or a timestamp outside the accepted clock-skew window (HTTP 401)."""

    status = 401


class GridReplayError(GridError):
    """A correctly signed request reused a nonce still remembered for its key (HTTP 409)."""

    status = 409


class GridForbiddenError(GridError):
    """The key is valid but its role or sites do not allow this request (HTTP 403)."""

    status = 403


class GridSiteError(GridError, KeyError):
    """The request names a site this gridpool does not control (HTTP 404)."""

    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown site"


class GridNotFoundError(GridError, KeyError):
    """The request names an event the site does not have (HTTP 404)."""

    status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown event"


class GridRequestError(GridError, ValueError):
    """A command's body is unusable; `field` names the offending field (HTTP 422)."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class GridConflictError(GridError):
    """The command contradicts a stored one (an event id reused with other terms) (409)."""

    status = 409


class GridBusyError(GridError):
    """A bounded resource is full (nonces remembered, events per site) (HTTP 503)."""

    status = 503


class GridStoreError(GridError):
    """The grid store (events, contacts, audit rows) failed or cannot be reached (503)."""

    status = 503
