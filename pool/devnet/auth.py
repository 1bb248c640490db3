"""RPC authentication like bitcoind: HTTP Basic with a random cookie
(`__cookie__:<64 hex>` in `<datadir>/.cookie`, mode 0600, removed at shutdown) and,
optionally, a configured user/password."""

import base64
import binascii
import hmac
import secrets
from pathlib import Path

COOKIE_USER = "__cookie__"
COOKIE_FILE_NAME = ".cookie"
COOKIE_SECRET_BYTES = 32  # bitcoind's cookie: 32 random bytes as hex


class RpcAuth:
    """Accepted credentials; `check` takes the raw Authorization header."""

    def __init__(self, cookie_path: Path, *, user: str | None = None, password: str | None = None):
        if (user is None) != (password is None):
            raise ValueError("rpc user and password go together")
        self.cookie_path = cookie_path
        self._accepted: list[bytes] = []
        if user is not None and password is not None:
            self._accepted.append(f"{user}:{password}".encode())

    def write_cookie(self) -> None:
        """A fresh cookie, readable by the owner only (written before anyone can read it)."""
        secret = secrets.token_hex(COOKIE_SECRET_BYTES)
        tmp = self.cookie_path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        tmp.touch(mode=0o600)
        tmp.write_text(f"{COOKIE_USER}:{secret}")
        tmp.replace(self.cookie_path)
        self._accepted.append(f"{COOKIE_USER}:{secret}".encode())

    def remove_cookie(self) -> None:
        self.cookie_path.unlink(missing_ok=True)

    def check(self, authorization: str | None) -> bool:
        """True for `Basic base64(user:password)` matching a cookie or the configured pair,
        compared in constant time."""
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            offered = base64.b64decode(authorization[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return any(hmac.compare_digest(offered, good) for good in self._accepted)


def basic_auth_header(user_colon_password: str) -> str:
    """The Authorization header value for `user:password` (e.g. a cookie file's text)."""
    return "Basic " + base64.b64encode(user_colon_password.encode()).decode()
