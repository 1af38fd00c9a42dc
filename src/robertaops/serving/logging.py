"""Structured logs: one JSON line per request on the `robertaops.access` logger, and a JSON formatter for the rest.

An access line carries the request id (the client's `x-request-id`, or one we generate and send back), route
template, model, status, error_type, duration and the API key's name. Inputs are logged as sha256 digests only,
so logs can correlate repeated inputs without holding user text; `--log-inputs` logs the texts themselves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from typing import Any

import orjson

ACCESS = logging.getLogger("robertaops.access")


def digest(text: Any) -> str:
    data = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def access_record(state: dict[str, Any], *, method: str, path: str, route: str, status: int, seconds: float,
                  log_inputs: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": "request", "request_id": state.get("request_id"), "method": method, "path": path, "route": route,
        "model": state.get("model"), "status": status, "duration_ms": round(seconds * 1000, 3),
    }
    for field in ("error_type", "key", "client", "served_by"):
        if state.get(field) is not None:
            record[field] = state[field]
    inputs = state.get("inputs")
    if inputs is not None:
        record["n_inputs"] = len(inputs)
        if log_inputs:
            record["inputs"] = list(inputs)
        else:
            record["inputs_sha256"] = [digest(t) for t in inputs]
    return record


class _AsJSON:
    """A log message rendered as JSON only if something asks for the text (a test's caplog, a plain handler): our
    formatter merges the dict itself, so a served request costs one JSON encoding, not an encode-decode-encode."""

    def __init__(self, record: dict[str, Any]):
        self.record = record

    def __str__(self) -> str:
        return json.dumps(self.record, ensure_ascii=False, default=str)


def log_access(record: dict[str, Any]) -> None:
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info(_AsJSON(record), extra={"access": record})


class JSONFormatter(logging.Formatter):
    """Every record as one JSON object; access lines (already JSON) are merged in rather than quoted."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                               + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(), "logger": record.name}
        access = getattr(record, "access", None)  # an access line: its fields at the top level
        if isinstance(access, dict):
            out.update(access)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure(level: str = "INFO") -> None:
    """Route robertaops' and uvicorn's loggers to stderr as JSON lines (called by `robertaops serve`, not the app)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    for name in ("robertaops", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
