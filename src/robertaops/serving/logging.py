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
import threading
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
    """One access line. The record is made here rather than by `ACCESS.info`, which would also walk the stack to
    find its caller's file and line: a third of the cost of a line (~15 us), for fields this logger never shows."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.handle(ACCESS.makeRecord(ACCESS.name, logging.INFO, "", 0, _AsJSON(record), None, None,
                                        extra={"access": record}))


class JSONFormatter(logging.Formatter):
    """Every record as one JSON object; an access line's fields are merged in at the top level."""

    _second: tuple[int, str] = (-1, "")  # the last whole second formatted: most lines share it

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second[0]:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        out: dict[str, Any] = {"ts": f"{self._second[1]}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                               "logger": record.name}
        access = getattr(record, "access", None)  # an access line: its fields at the top level
        if isinstance(access, dict):
            out.update(access)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class BatchedStreamHandler(logging.StreamHandler):
    """A StreamHandler that writes lines in batches: each record is formatted at once and queued; a background
    thread writes what is queued every `interval` seconds, and a warning or error is written at once with everything
    before it. Under load that is one write per interval instead of one per request: each write releases the GIL,
    and getting it back from the model's threads cost the event loop more than the write itself (serving benchmark,
    benchmarks/RESULTS.md). A process killed outright loses at most `interval` seconds of lines; a normal exit
    writes them all (logging.shutdown closes the handler)."""

    def __init__(self, stream: Any = None, interval: float = 0.1):
        super().__init__(stream)
        self.interval = interval
        self.pending: list[str] = []
        self._write_lock = threading.Lock()  # one writer at a time, batches in order
        self._stopped = threading.Event()
        threading.Thread(target=self._flush_every_interval, name="robertaops-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]  (created by Handler.__init__)
            self.pending.append(line)
        if record.levelno >= logging.WARNING:
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            with self.lock:  # type: ignore[union-attr]
                lines, self.pending = self.pending, []
            if self.stream is None or getattr(self.stream, "closed", False):
                return  # a stream closed under us (a test's captured stderr): nowhere to write
            if lines:
                self.stream.write("".join(lines))
            if hasattr(self.stream, "flush"):
                self.stream.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()


def configure(level: str = "INFO") -> None:
    """Route robertaops' and uvicorn's loggers to stderr as JSON lines (called by `robertaops serve`, not the app)."""
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    for name in ("robertaops", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
