"""What every route needs, as FastAPI dependencies: the caller's key checked, the model resolved, inputs validated
and recorded for the access log, the backend call timed, and the result sent as JSON.

`Call` keeps routes to a few lines: `call.model(body.model)` resolves the name (404 for an unknown one),
`call.texts(body.inputs)` checks the batch size (422) and converts token ids to text, `await call.run(coro)` times
the backend work for the `x-compute-time` header.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import numpy as np
import orjson
from fastapi import Depends, Request
from fastapi.responses import Response

from ..errors import InvalidInputError, NotReadyError, TooManyInputsError
from .context import REQUEST, RequestInfo

T = TypeVar("T")


def _default(value: Any) -> Any:
    """JSON for the numpy values orjson does not take natively (scalars, non-contiguous arrays)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_response(content: Any, status_code: int = 200) -> Response:
    """Compact UTF-8 JSON. orjson writes numpy float32 arrays directly, each number the shortest text that reads
    back as the same float32: a 384-d embedding encodes ~10x faster than `json.dumps(v.tolist())`, which was a
    quarter of the event loop's time under load (measured with py-spy)."""
    body = orjson.dumps(content, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, media_type="application/json")


class Call:
    """One request's view of the server: settings, backend, the resolved model, and the state the middleware logs."""

    def __init__(self, request: Request):
        self.request = request
        self.state: dict[str, Any] = request.scope.setdefault("state", {})
        self.settings = request.app.state.settings
        self.backend = request.app.state.backend
        self.name: str | None = None

    def model(self, name: str | None) -> str:
        """The served model's name (the default when None); unknown -> ModelNotFoundError (404)."""
        if self.backend is None or not self.backend.ready:
            raise NotReadyError("the models are still loading; retry shortly")
        self.backend.model(name)
        self.name = name or self.backend.names[0]
        self.state["model"] = self.name
        return self.name

    @property
    def m(self):
        return self.backend.model(self.name)

    def count(self, items: list, what: str = "inputs") -> list:
        limit = self.settings.max_client_batch_size
        if not items:
            raise InvalidInputError(f"{what} must not be empty")
        if len(items) > limit:
            raise TooManyInputsError(f"{len(items)} {what} in one request; this server accepts at most {limit} "
                                     "(--max-client-batch-size)")
        self.state["inputs"] = items
        self.state["compute_characters"] = sum(
            len(t) if isinstance(t, str) else sum(len(x) for x in t if isinstance(x, str)) for t in items)
        return items

    def texts(self, inputs: str | list, what: str = "inputs") -> tuple[list[str], bool]:
        """TEI/OpenAI inputs (a text, token ids, or a batch of either) -> (texts, was it a single input)."""
        single = isinstance(inputs, str) or (bool(inputs) and all(isinstance(i, int) for i in inputs))
        items = [inputs] if single else list(inputs)
        texts = [x if isinstance(x, str) else self.decode_ids(x, i) for i, x in enumerate(items)]
        return self.count(texts, what), single

    def decode_ids(self, ids: list[int], index: int = 0) -> str:
        """Token ids (of this model's tokenizer) -> text, so they run through the same pipeline as text."""
        size = self.m.tokenizer.vocab_size
        bad = [i for i in ids if not 0 <= i < size]
        if bad or not ids:
            what = f"token id {bad[0]} is outside this model's vocabulary (0..{size - 1})" if bad else "no token ids"
            raise InvalidInputError(f"input {index}: {what}")
        return self.m.decode(ids, skip_special_tokens=True)

    @staticmethod
    def truncation(params: Any) -> bool:
        """TEI's truncate / truncation_direction / prompt_name -> our truncate flag (left truncation and prompts are
        not supported: refused rather than ignored)."""
        if params is None:
            return False
        if str(getattr(params, "truncation_direction", "right")).lower() != "right":
            raise InvalidInputError("truncation_direction 'left' is not supported; use 'right'")
        if getattr(params, "prompt_name", None) is not None:
            raise InvalidInputError(f"prompt_name {params.prompt_name!r} is not supported: the served models define "
                                    "no prompts")
        return bool(getattr(params, "truncate", False))

    async def run(self, work: Awaitable[T]) -> T:
        """Await the backend's work, timing it; the backend adds tokenization/queue/inference times to the dict."""
        started = time.perf_counter()
        info = self.state.get("request_info")
        if info is None:
            # Starlette's Headers: a case-insensitive mapping already, so nothing is copied per request.
            info = self.state["request_info"] = RequestInfo(key=self.state.get("key"), headers=self.request.headers)
        token = REQUEST.set(info)
        try:
            return await work
        finally:
            REQUEST.reset(token)
            self.state["compute_seconds"] = self.state.get("compute_seconds", 0.0) + time.perf_counter() - started


def authorize(request: Request, role: str) -> None:
    """A valid API key with `role` (401 / 403), within its rate limit (429). Open server: no key needed."""
    keyring = request.app.state.keyring
    state = request.scope.setdefault("state", {})
    key = state.get("api_key")  # the middleware authenticates requests with a body before reading it
    if key is None:
        client = request.client.host if request.client else "anonymous"
        key = keyring.authenticate(request.headers.get("authorization"), client=client)
    keyring.authorize(key, role)
    state["key"] = key.name if not keyring.open else None


def require(role: str):
    """Dependency: `authorize(request, role)`. The role is kept on the function for direct dispatch (direct.py)."""

    # async: FastAPI runs a sync dependency in its thread pool, two thread hops per request that each wake a
    # thread and pass the GIL around while the model computes (measured in benchmarks/RESULTS.md).
    async def check(request: Request) -> None:
        authorize(request, role)

    check.role = role  # type: ignore[attr-defined]
    return Depends(check)


async def get_call(request: Request) -> Call:  # async for the same reason as `check`
    return Call(request)
