"""The cgminer JSON API on TCP 4028, as cgminer, bmminer and LuxOS serve it.

One request per connection: the client writes ``{"command": "...", "parameter": "..."}``
and keeps the socket open; the miner answers with one JSON object, a NUL byte, and closes
(cgminer ``API-README``). ``"a+b"`` runs several read commands and answers
``{"a": [reply], "b": [reply], "id": 1}``. Every reply carries
``STATUS[0] = {"STATUS": "S"|"I"|"W"|"E"|"F", "Code": n, "Msg": "..."}``.

Known quirk handled here: bmminer joins the sections of a multi-command reply with ``}{``
instead of ``},{``, which is not JSON; it is repaired before parsing.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from miners.errors import (
    MinerCommandError,
    MinerProtocolError,
    MinerTimeoutError,
    MinerUnreachableError,
)

DEFAULT_PORT = 4028
MAX_REPLY_BYTES = 1024 * 1024  # a reply larger than this is refused (stats of big rigs < 64 KiB)
READ_CHUNK_BYTES = 16 * 1024
OK_SEVERITIES = frozenset({"S", "I"})  # success, informational ("W"arning counts as an error)


async def request(
    miner_id: str,
    host: str,
    port: int,
    command: str,
    parameter: str | None = None,
    *,
    timeout_s: float,
    max_reply_bytes: int = MAX_REPLY_BYTES,
) -> dict[str, Any]:
    """One command, one connection, one deadline for connect + write + read."""
    payload: dict[str, str] = {"command": command}
    if parameter is not None:
        payload["parameter"] = parameter
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(json.dumps(payload).encode())
            await writer.drain()
            raw = await _read_reply(reader, max_reply_bytes, miner_id, command)
    except TimeoutError:
        raise MinerTimeoutError(miner_id, command, f"no answer within {timeout_s:g} s") from None
    except (ConnectionError, OSError) as err:
        reason = err.strerror or type(err).__name__
        raise MinerUnreachableError(miner_id, command, f"{host}:{port}: {reason}") from None
    finally:
        if writer is not None:
            writer.close()  # no wait_closed: the peer closes first, nothing is left to flush
    return parse_reply(raw, miner_id, command)


async def _read_reply(
    reader: asyncio.StreamReader, limit: int, miner_id: str, command: str
) -> bytes:
    buf = bytearray()
    while True:
        chunk = await reader.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        nul = chunk.find(b"\x00")
        buf += chunk if nul < 0 else chunk[:nul]
        if len(buf) > limit:
            raise MinerProtocolError(miner_id, command, f"reply larger than {limit} bytes")
        if nul >= 0:
            break
    if not buf:
        raise MinerProtocolError(miner_id, command, "empty reply (connection closed)")
    return bytes(buf)


def parse_reply(raw: bytes, miner_id: str, command: str) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace").strip()
    try:
        reply = json.loads(text)
    except ValueError:
        try:
            reply = json.loads(text.replace("}{", "},{"))  # bmminer multi-command quirk
        except ValueError:
            raise MinerProtocolError(miner_id, command, "reply is not JSON") from None
    if not isinstance(reply, dict):
        raise MinerProtocolError(miner_id, command, "reply is not a JSON object")
    return reply


def status_of(reply: dict[str, Any]) -> dict[str, Any]:
    """The first STATUS entry of a single-command reply ({} when missing)."""
    status = reply.get("STATUS")
    if isinstance(status, list) and status and isinstance(status[0], dict):
        return status[0]
    return {}


def check_status(reply: dict[str, Any], miner_id: str, command: str) -> dict[str, Any]:
    """Raise MinerCommandError unless the reply's STATUS says success."""
    status = status_of(reply)
    if not status:
        raise MinerProtocolError(miner_id, command, "reply has no STATUS")
    if status.get("STATUS") not in OK_SEVERITIES:
        code = status.get("Code")
        reason = str(status.get("Msg", "error"))
        raise MinerCommandError(miner_id, command, reason, code if isinstance(code, int) else None)
    return reply


def section(reply: dict[str, Any], name: str, miner_id: str, command: str) -> list[dict]:
    """A reply's named section (e.g. SUMMARY) as a non-empty list of objects."""
    rows = reply.get(name)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise MinerProtocolError(miner_id, command, f"reply has no {name} section")
    return rows


def multi_sections(
    reply: dict[str, Any], commands: list[str], miner_id: str
) -> dict[str, dict[str, Any]]:
    """Split a ``"a+b"`` reply into checked single replies, keyed by command."""
    out: dict[str, dict[str, Any]] = {}
    joined = "+".join(commands)
    for name in commands:
        part = reply.get(name)
        if not isinstance(part, list) or not part or not isinstance(part[0], dict):
            if reply.get("STATUS"):  # the whole request was refused
                check_status(reply, miner_id, joined)
            raise MinerProtocolError(miner_id, joined, f"reply has no {name!r} part")
        out[name] = check_status(part[0], miner_id, name)
    return out


def finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (a bool, NaN, infinity, or
    an integer too large for a float: firmware replies are not trusted)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def number(row: dict[str, Any], *keys: str) -> float | None:
    """The first of `keys` present in `row` as a finite number."""
    for key in keys:
        value = finite(row.get(key))
        if value is not None:
            return value
    return None


def hashrate_hs(row: dict[str, Any]) -> float | None:
    """cgminer's 5-second hash rate in H/s (LuxOS/bmminer give GH/s, cgminer MH/s)."""
    ghs = number(row, "GHS 5s")
    if ghs is not None:
        return ghs * 1e9
    mhs = number(row, "MHS 5s", "MHS av")
    return mhs * 1e6 if mhs is not None else None
