"""serving/logging.py's batched handler: lines are queued, written in order by the background thread, at once for
warnings and errors, and all of them on close."""

from __future__ import annotations

import io
import json
import logging
import time

from robertaops.serving.logging import BatchedStreamHandler, JSONFormatter


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("robertaops.test", level, "", 0, message, None, None)


def test_info_lines_wait_for_the_interval_and_keep_their_order():
    out = io.StringIO()
    handler = BatchedStreamHandler(out, interval=3600)  # the thread will not flush during this test
    for i in range(3):
        handler.emit(_record(f"line {i}"))
    assert out.getvalue() == ""
    handler.flush()
    assert out.getvalue() == "line 0\nline 1\nline 2\n"
    handler.close()


def test_a_warning_is_written_at_once_after_what_came_before():
    out = io.StringIO()
    handler = BatchedStreamHandler(out, interval=3600)
    handler.emit(_record("queued"))
    handler.emit(_record("something broke", logging.ERROR))
    assert out.getvalue() == "queued\nsomething broke\n"
    handler.close()


def test_the_background_thread_writes_without_being_asked():
    out = io.StringIO()
    handler = BatchedStreamHandler(out, interval=0.01)
    handler.setFormatter(JSONFormatter())
    handler.emit(_record("hello"))
    deadline = time.monotonic() + 5
    while not out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(out.getvalue())["message"] == "hello"
    handler.close()


def test_close_writes_whatever_is_pending():
    out = io.StringIO()
    handler = BatchedStreamHandler(out, interval=3600)
    handler.emit(_record("last words"))
    handler.close()
    assert out.getvalue() == "last words\n"
