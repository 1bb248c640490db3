"""A JSON-RPC server over HTTP that behaves like bitcoind's (src/httprpc.cpp).

- POST only (405 otherwise); HTTP Basic auth, 401 + `WWW-Authenticate` on missing or bad
  credentials (bad ones after a 250 ms pause, as bitcoind does against brute force).
- A single request in JSON-RPC 1.0 style (no "jsonrpc" or "1.0") answers
  `{"result", "error", "id"}`; on error the HTTP status is 500, or 404 for
  "Method not found" (-32601), or 400 for an invalid request (-32600).
- A JSON-RPC 2.0 request answers HTTP 200 with either "result" or "error"; a 2.0
  notification (no "id") is executed and answered 204 No Content.
- A batch (JSON array) answers HTTP 200 with one reply per non-notification.
- Parameters: positional or named. Wrong count → -1 with the usage line (bitcoind
  throws its help text as RPC_MISC_ERROR); wrong JSON type → -3; unknown named
  parameter → -8. Handlers raise pool.errors.RPCError for everything else.
"""

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from pool.devnet.auth import RpcAuth
from pool.errors import DevnetError, RPCError

log = structlog.get_logger(__name__)

RPC_MISC_ERROR = -1
RPC_TYPE_ERROR = -3
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_INVALID_PARAMETER = -8
RPC_DESERIALIZATION_ERROR = -22
RPC_VERIFY_ERROR = -25
RPC_CLIENT_NOT_CONNECTED = -9
RPC_INVALID_REQUEST = -32600
RPC_METHOD_NOT_FOUND = -32601
RPC_INVALID_PARAMS = -32602
RPC_PARSE_ERROR = -32700

MAX_BODY_BYTES = 64 * 1024 * 1024  # bytes; a 4 MB block is 8 MB of hex, batches more
BAD_AUTH_DELAY = 0.25  # s; bitcoind's pause before answering 401 to wrong credentials
WWW_AUTHENTICATE = 'Basic realm="jsonrpc"'
SHUTDOWN_GRACE = 1.0  # s; in-flight calls (a longpoll) get this long at shutdown

Handler = Callable[..., Awaitable[Any]]
_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "bool",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


@dataclass(frozen=True, slots=True)
class RawJson:
    """A result that is already JSON text (large, pre-encoded answers such as templates)."""

    text: str


_RAW_PLACEHOLDER = "\x00raw-json-result\x00"


def dumps(body: object) -> str:
    """json.dumps that splices RawJson results in as they are."""
    if isinstance(body, list):
        return "[" + ", ".join(dumps(item) for item in body) + "]"
    if isinstance(body, dict) and isinstance(body.get("result"), RawJson):
        encoded = json.dumps({**body, "result": _RAW_PLACEHOLDER})
        return encoded.replace(json.dumps(_RAW_PLACEHOLDER), body["result"].text, 1)
    return json.dumps(body)


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: its name, the JSON types it accepts, and whether it is required."""

    name: str
    types: tuple[type, ...]
    required: bool = False


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    params: tuple[Param, ...] = ()

    @property
    def usage(self) -> str:
        args = " ".join(p.name if p.required else f"( {p.name} )" for p in self.params)
        return f"{self.name} {args}".rstrip()


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), "unknown")


def bind_params(method: Method, params: object) -> list[Any]:
    """Positional or named JSON params → handler arguments (None where omitted)."""
    if isinstance(params, dict):
        names = {p.name: i for i, p in enumerate(method.params)}
        args: list[Any] = [None] * len(method.params)
        for name, value in params.items():
            if name not in names:
                raise RPCError(RPC_INVALID_PARAMETER, f"Unknown named parameter {name}")
            args[names[name]] = value
    else:
        assert isinstance(params, list)
        if len(params) > len(method.params):
            raise RPCError(RPC_MISC_ERROR, method.usage)
        args = [*params, *([None] * (len(method.params) - len(params)))]
    for param, value in zip(method.params, args, strict=True):
        if value is None:
            if param.required:
                raise RPCError(RPC_MISC_ERROR, method.usage)
            continue
        if not isinstance(value, param.types) or (
            isinstance(value, bool) and bool not in param.types
        ):
            expected = "|".join(sorted({_JSON_TYPE_NAMES[t] for t in param.types}))
            raise RPCError(
                RPC_TYPE_ERROR,
                f"JSON value of type {_json_type(value)} is not of expected type {expected}",
            )
    return args


@dataclass(slots=True)
class _Request:
    id: Any
    version: int  # 1 (legacy 1.0/1.1) or 2
    is_notification: bool
    method: str
    params: object


def _parse_request(obj: object) -> _Request:
    """bitcoind's JSONRPCRequest::parse; errors raise RPCError(-32600)."""
    if not isinstance(obj, dict):
        raise RPCError(RPC_INVALID_REQUEST, "Invalid Request object")
    version = 1
    if "jsonrpc" in obj and obj["jsonrpc"] is not None:
        if not isinstance(obj["jsonrpc"], str):
            raise RPCError(RPC_INVALID_REQUEST, "jsonrpc field must be a string")
        if obj["jsonrpc"] not in ("1.0", "2.0"):
            raise RPCError(RPC_INVALID_REQUEST, "JSON-RPC version not supported")
        version = 2 if obj["jsonrpc"] == "2.0" else 1
    method = obj.get("method")
    if method is None:
        raise RPCError(RPC_INVALID_REQUEST, "Missing method")
    if not isinstance(method, str):
        raise RPCError(RPC_INVALID_REQUEST, "Method must be a string")
    params = obj.get("params")
    if params is None:
        params = []
    elif not isinstance(params, list | dict):
        raise RPCError(RPC_INVALID_REQUEST, "Params must be an array or object")
    return _Request(obj.get("id"), version, version == 2 and "id" not in obj, method, params)


def _reply(result: Any, error: dict | None, request_id: Any, version: int) -> dict:
    if version == 2:
        body: dict[str, Any] = {"jsonrpc": "2.0"}
        body.update({"error": error} if error is not None else {"result": result})
        body["id"] = request_id
        return body
    return {"result": result, "error": error, "id": request_id}


def _error_object(err: RPCError) -> dict:
    return {"code": err.code, "message": err.message}


def _http_status(code: int) -> int:
    return {RPC_INVALID_REQUEST: 400, RPC_METHOD_NOT_FOUND: 404}.get(code, 500)


def _json_response(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=dumps(body) + "\n", content_type="application/json")


class JsonRpcServer:
    """Serves `methods` on http://host:port/ with bitcoind's envelopes and statuses."""

    def __init__(
        self,
        methods: dict[str, Method],
        auth: RpcAuth,
        *,
        host: str = "127.0.0.1",
        port: int = 18443,
        max_body_bytes: int = MAX_BODY_BYTES,
        bad_auth_delay: float = BAD_AUTH_DELAY,
    ) -> None:
        self.methods = methods
        self.auth = auth
        self.host = host
        self.port = port  # 0 picks a free port; replaced by the bound port at start
        self.max_body_bytes = max_body_bytes
        self.bad_auth_delay = bad_auth_delay
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def start(self) -> str:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as err:
            sock.close()
            await self._runner.cleanup()
            raise DevnetError(f"cannot bind RPC on {self.host}:{self.port}: {err}") from err
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        log.info("devnet_rpc_listening", url=self.url, max_body_bytes=self.max_body_bytes)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405, text="JSONRPC server handles only POST requests")
        if not self.auth.check(request.headers.get("Authorization")):
            if "Authorization" in request.headers:
                log.warning("devnet_rpc_bad_password", peer=request.remote)
                await asyncio.sleep(self.bad_auth_delay)
            return web.Response(status=401, headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return _json_response(
                _reply(None, _error_object(RPCError(RPC_PARSE_ERROR, "Parse error")), None, 1), 500
            )
        if isinstance(body, list):
            replies = [await self._execute_in_batch(item) for item in body]
            return _json_response([r for r in replies if r is not None])
        if not isinstance(body, dict):
            err = RPCError(RPC_PARSE_ERROR, "Top-level object parse error")
            return _json_response(_reply(None, _error_object(err), None, 1), 500)
        return await self._execute_single(body)

    async def _execute_single(self, body: dict) -> web.Response:
        try:
            req = _parse_request(body)
        except RPCError as err:
            return _json_response(
                _reply(None, _error_object(err), body.get("id"), 1), _http_status(err.code)
            )
        try:
            result = await self.call(req.method, req.params)
        except RPCError as err:
            if req.version == 2:
                return _json_response(_reply(None, _error_object(err), req.id, 2))
            return _json_response(
                _reply(None, _error_object(err), req.id, 1), _http_status(err.code)
            )
        if req.is_notification:
            return web.Response(status=204)
        return _json_response(_reply(result, None, req.id, req.version))

    async def _execute_in_batch(self, item: object) -> dict | None:
        try:
            req = _parse_request(item)
        except RPCError as err:
            request_id = item.get("id") if isinstance(item, dict) else None
            return _reply(None, _error_object(err), request_id, 1)
        try:
            result, error = await self.call(req.method, req.params), None
        except RPCError as err:
            result, error = None, _error_object(err)
        return None if req.is_notification else _reply(result, error, req.id, req.version)

    async def call(self, name: str, params: object) -> Any:
        """Dispatch one call; every failure comes out as RPCError."""
        method = self.methods.get(name)
        if method is None:
            raise RPCError(RPC_METHOD_NOT_FOUND, "Method not found")
        args = bind_params(method, params)
        try:
            return await method.handler(*args)
        except RPCError:
            raise
        except Exception as err:  # bitcoind turns any std::exception into RPC_MISC_ERROR
            log.exception("devnet_rpc_handler_failed", method=name)
            raise RPCError(RPC_MISC_ERROR, str(err) or type(err).__name__) from err
