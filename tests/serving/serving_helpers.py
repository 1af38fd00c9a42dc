"""Assertions shared by the server tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from robertaops.serving.errors import STATUS


def error(r, status: int, error_type: str) -> str:
    """`r` is the error response the one table promises: this status, exactly {error, error_type}; its message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type
    assert STATUS[error_type] == status
    return body["error"]
