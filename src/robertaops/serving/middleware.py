"""The request middleware (pure ASGI): request id, API key, body limit, UTF-8 check, catch-all 500, timing
headers, access log and request metrics, all in one place around every request.

A request with a body (every POST route needs a key) is authenticated before a byte of its body is read, so a
client without a valid key gets 401 (or 429 over its rate limit), never 400/413 about a body it had no right to
send, and costs no buffering. The route's dependency then checks the key's role (403).

Pure ASGI rather than `BaseHTTPMiddleware`: no extra task per request, and it can answer a bug with a 500 without
re-raising it (Starlette's ServerErrorMiddleware would re-raise, and the server would print a second traceback).
The body is read here once, bounded by `payload_limit` (Content-Length is checked first, then the bytes actually
received, so a chunked or lying client cannot get past it), checked to be JSON by its media type and UTF-8 by its
bytes, and then either handed to an inference route's endpoint directly (direct.py) or replayed to the app.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidJSONError, PayloadTooLargeError, UnsupportedMediaTypeError
from .errors import error_type_of, response_for
from .logging import access_record, log_access

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
BODY_METHODS = {"POST", "PUT", "PATCH"}
# Generated request ids: a random per-process prefix and a counter. Unique like uuid4 for our purpose (across
# replicas and restarts), without a urandom syscall per request (uuid4 was ~7% of the event loop's samples).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"  # 32 hex digits, like a uuid4 hex


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Any, metrics: Any, keyring: Any = None, direct: Any = None):
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.keyring = keyring
        self.direct = direct  # DirectRoutes: the inference routes this middleware calls itself

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = given if REQUEST_ID.match(given) else new_request_id()
        state["client"] = scope["client"][0] if scope.get("client") else None
        status = [500, False]  # status code, response started

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[:] = [message["status"], True]
                out = MutableHeaders(scope=message)
                out["x-request-id"] = state["request_id"]
                out["x-total-time"] = str(int((time.perf_counter() - started) * 1000))
                if "compute_seconds" in state:
                    out["x-compute-time"] = str(int(state["compute_seconds"] * 1000))
                    out["x-compute-type"] = str(self.settings.device)
                info = state.get("request_info")  # TEI's x-{tokenization,queue,inference}-time, x-compute-tokens
                for name, value in (info.timings if info else {}).items():
                    if name == "tokens":
                        if "compute_tokens" not in state:
                            out["x-compute-tokens"] = str(int(value))
                    else:
                        out[f"x-{name}-time"] = str(int(value * 1000))
                if info is not None and info.served_by:
                    out["x-served-by"] = info.served_by  # a canary answered
                    state["served_by"] = info.served_by
                for name in ("compute_characters", "compute_tokens"):
                    if name in state:
                        out["x-" + name.replace("_", "-")] = str(state[name])
            await send(message)

        try:
            if scope["method"] in BODY_METHODS:
                if self.keyring is not None and not self.keyring.open:
                    state["api_key"] = self.keyring.authenticate(headers.get("authorization"), client=state["client"])
                body = await self._read_body(headers, receive)
                direct = self.direct.match(scope) if self.direct is not None else None
                if direct is not None:  # an inference route: its endpoint, without FastAPI's machinery (direct.py)
                    await direct.handle(scope, body, send_with_headers)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a 500
            if status[1]:
                raise
            response = response_for(exc)
            state.setdefault("error_type", error_type_of(exc))
            await response(scope, receive, send_with_headers)
        finally:
            self._record(scope, state, status[0], time.perf_counter() - started)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        """Read the whole body (at most payload_limit bytes) and check that it is declared as JSON and is UTF-8."""
        limit = self.settings.payload_limit
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media and not (media == "application/json" or media.endswith("+json")):
            raise UnsupportedMediaTypeError(f"send the body as JSON with 'Content-Type: application/json' "
                                            f"(got {media!r})")
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLargeError(f"the body is {int(declared):,} bytes; this server accepts at most {limit:,}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(f"the body is over {limit:,} bytes, the most this server accepts")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJSONError(f"the body is not valid UTF-8 (byte {exc.start})") from None
        return body

    def _record(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        model = state.get("model") or ""
        if self.metrics is not None:
            self.metrics.observe_request(route, model, status, seconds)
            if status >= 400:
                self.metrics.failures.labels(error_type=state.get("error_type") or "internal").inc()
        log_access(access_record(state, method=scope["method"], path=scope["path"], route=route, status=status,
                                 seconds=seconds, log_inputs=self.settings.log_inputs))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body already read, then whatever the connection sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
