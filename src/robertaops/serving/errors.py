"""Errors -> HTTP: the ONE table from `error_type` to status, and the handlers that use it.

Every error body is `{"error": message, "error_type": type}` (TEI's shape, with our stable types), whatever raised
it: a `RobertaOpsError` from the backend, a request FastAPI could not validate, a route that does not exist, or a
bug (500, the traceback only in the server log). Routes raise; they never build error JSON.

Status choices, where the standards leave room:
- invalid_input 422 (TEI and FastAPI use 422 for a well-formed body with wrong values); too_many_inputs 422 (TEI's).
- invalid_json 400: the body is not JSON, or not UTF-8, so there is nothing to validate (axum/TEI answer 400 too).
- unsupported_media_type 415: a body declared as something other than JSON (curl -d sends a form); a body with no
  Content-Type at all is read as JSON.
- unsupported_task 400: the request is valid but this model has no head for it (/predict on an embedding model);
  the client must pick another model, so 4xx, and not 422, which would blame the inputs.
- model_not_found 404: the `model` named in the request is not served here; index_not_found and document_not_found
  404 likewise; stale_index 409 (the index conflicts with the served model's version: rebuild it).
- overloaded / rate_limited 429 with `Retry-After` (whole seconds, rounded up); timeout 504; unauthorized 401 with
  `WWW-Authenticate: Bearer`; forbidden 403; conflict 409 (admin: a name already loaded, the last model
  unloaded); invalid_checkpoint, manifest_mismatch, tokenizer_mismatch (a checkpoint on the server's disk that
  fails its checks) and internal 500; not_ready 503; registry_error 503 (the model registry is unreachable).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    OverloadedError,
    RobertaOpsError,
)

log = logging.getLogger("robertaops.serving")

STATUS: dict[str, int] = {
    "invalid_input": 422,
    "too_many_inputs": 422,
    "invalid_json": 400,
    "unsupported_task": 400,
    "payload_too_large": 413,
    "model_not_found": 404,
    "index_not_found": 404,
    "document_not_found": 404,
    "stale_index": 409,
    "not_found": 404,
    "method_not_allowed": 405,
    "unsupported_media_type": 415,
    "overloaded": 429,
    "rate_limited": 429,
    "unauthorized": 401,
    "forbidden": 403,
    "conflict": 409,
    "timeout": 504,
    "not_ready": 503,
    "invalid_checkpoint": 500,
    "manifest_mismatch": 500,
    "tokenizer_mismatch": 500,
    "registry_error": 503,
    "invalid_data": 422,
    "internal": 500,
}
# Starlette's own HTTP errors (unknown route, wrong method, ...) get an error_type too.
HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def status_of(error_type: str) -> int:
    return STATUS.get(error_type, 500)


def error_response(message: str, error_type: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status_of(error_type),
                        headers=headers)


def error_type_of(exc: BaseException) -> str:
    if isinstance(exc, RequestValidationError):
        return validation_message(exc)[1]
    return exc.error_type if isinstance(exc, RobertaOpsError) else "internal"


def response_for(exc: BaseException) -> JSONResponse:
    """The response for any exception: its error_type's status; a bug becomes a bare 500 (logged, not shown)."""
    if isinstance(exc, RequestValidationError):
        return error_response(*validation_message(exc))
    if not isinstance(exc, RobertaOpsError):
        log.error("internal error", exc_info=(type(exc), exc, exc.__traceback__))
        return error_response("internal error", "internal")
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.error_type == "unauthorized":
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(str(exc) or exc.error_type, exc.error_type, headers)


# Union branches show up in pydantic's error locations as type tags ("str", "list[int]", "SimilarityInput").
_TAG = re.compile(r"^(str|int|float|bool|list\[.*\]|dict\[.*\]|union\[.*\]|function-.*|[A-Z]\w*)$")


def validation_message(exc: RequestValidationError) -> tuple[str, str]:
    """(message, error_type) for FastAPI's validation errors: one readable line naming each bad field, the value
    it got, and what it expected (one union's alternatives merged into one "expected a or b")."""
    fields: dict[str, tuple[list[str], Any]] = {}
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "invalid JSON")
            return f"the body is not valid JSON: {detail}", "invalid_json"
        loc = [str(p) for p in err.get("loc", ()) if p != "body" and not _TAG.match(str(p))]
        field = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "missing":
            msg = "field required"
        expected = msg.removeprefix("Input should be a valid ").removeprefix("Input should be ")
        fields.setdefault(field, ([], err.get("input")))[0].append(expected)
    parts = []
    for field, (expected, value) in fields.items():
        wanted = " or ".join(dict.fromkeys(expected))
        if wanted == "field required":
            parts.append(f"{field}: field required")
        else:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            parts.append(f"{field}: expected {wanted}, got {type(value).__name__} {shown}")
    return "invalid request: " + "; ".join(parts[:6]) + ("; ..." if len(parts) > 6 else ""), "invalid_input"


def _note(request: Request, error_type: str) -> None:
    """Tell the request middleware (metrics, access log) which error this was."""
    request.scope.setdefault("state", {})["error_type"] = error_type


async def _robertaops_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RobertaOpsError)
    _note(request, exc.error_type)
    return response_for(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, error_type = validation_message(exc)
    _note(request, error_type)
    return error_response(message, error_type)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_type = HTTP_TYPES.get(exc.status_code, "invalid_input" if exc.status_code < 500 else "internal")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    _note(request, error_type)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    response = JSONResponse({"error": message, "error_type": error_type}, status_code=exc.status_code)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install(app: FastAPI) -> None:
    """Register the handlers. Bugs (plain exceptions) are turned into 500s by the request middleware, which can
    answer without re-raising (Starlette's own 500 handler re-raises, and the traceback would reach the client log)."""
    app.add_exception_handler(RobertaOpsError, _robertaops_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
