"""Documents, their chunks and metadata in SQLite.

A document has the caller's id (`ext_id`), title, text and a JSON metadata object; each chunk is one window of the
document's content (title + text) with its character span, and its integer id is the vector's id in FAISS. Within
a committed index generation the file never changes again, so readers open it read-only and immutable (no locks).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (id INTEGER PRIMARY KEY, ext_id TEXT UNIQUE NOT NULL, title TEXT NOT NULL,
                                 text TEXT NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, start INTEGER NOT NULL,
                                   end INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc);
"""


def _content(title: str, text: str) -> str:
    return f"{title} {text}".strip() if title else text


class Store:
    def __init__(self, path: Path, *, readonly: bool = False):
        if readonly:
            uri = f"file:{path}?mode=ro&immutable=1"
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        else:
            self.db = sqlite3.connect(path)
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- writes -------------------------------------------------------------------------------------------------
    def existing(self, ext_ids: Sequence[str]) -> dict[str, int]:
        """{ext_id: row id} for the ids that are already in the store."""
        out: dict[str, int] = {}
        for at in range(0, len(ext_ids), 500):  # SQLite caps the number of ? parameters
            part = list(ext_ids[at : at + 500])
            marks = ",".join("?" * len(part))
            out.update(self.db.execute(f"SELECT ext_id, id FROM docs WHERE ext_id IN ({marks})", part).fetchall())
        return out

    def delete(self, doc_rows: Iterable[int]) -> list[int]:
        """Remove documents (by row id) and their chunks; returns the removed chunk ids (vector ids)."""
        rows = list(doc_rows)
        gone: list[int] = []
        for at in range(0, len(rows), 500):
            part = rows[at : at + 500]
            marks = ",".join("?" * len(part))
            gone += [r[0] for r in self.db.execute(f"SELECT id FROM chunks WHERE doc IN ({marks})", part)]
            self.db.execute(f"DELETE FROM chunks WHERE doc IN ({marks})", part)
            self.db.execute(f"DELETE FROM docs WHERE id IN ({marks})", part)
        return gone

    def add(self, docs, spans_per_doc: list[list[tuple[int, int]]]) -> list[int]:
        """Insert documents and their chunks; returns the new chunk ids in order (one per span)."""
        chunk_ids: list[int] = []
        for doc, spans in zip(docs, spans_per_doc, strict=True):
            try:
                meta = json.dumps(doc.metadata, ensure_ascii=False, default=str)
            except (TypeError, ValueError) as exc:
                raise InvalidInputError(f"document {doc.id}: metadata is not JSON-serializable ({exc})") from None
            cur = self.db.execute("INSERT INTO docs (ext_id, title, text, metadata) VALUES (?, ?, ?, ?)",
                                  (doc.id, doc.title, doc.text, meta))
            for start, end in spans:
                chunk_ids.append(self.db.execute("INSERT INTO chunks (doc, start, end) VALUES (?, ?, ?)",
                                                 (cur.lastrowid, start, end)).lastrowid)
        return chunk_ids

    def commit(self) -> None:
        self.db.commit()

    # -- reads --------------------------------------------------------------------------------------------------
    def count(self) -> tuple[int, int]:
        docs = self.db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        return docs, self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def chunk_docs(self, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
        """{chunk id: (doc row, start, end)}."""
        out: dict[int, tuple[int, int, int]] = {}
        for at in range(0, len(chunk_ids), 500):
            part = [int(c) for c in chunk_ids[at : at + 500]]
            marks = ",".join("?" * len(part))
            for cid, doc, start, end in self.db.execute(
                    f"SELECT id, doc, start, end FROM chunks WHERE id IN ({marks})", part):
                out[cid] = (doc, start, end)
        return out

    def chunks_of(self, doc_rows: Sequence[int]) -> dict[int, list[tuple[int, int, int]]]:
        """{doc row: [(chunk id, start, end), ...]} in chunk order."""
        out: dict[int, list[tuple[int, int, int]]] = {}
        marks = ",".join("?" * len(doc_rows))
        for cid, doc, start, end in self.db.execute(
                f"SELECT id, doc, start, end FROM chunks WHERE doc IN ({marks}) ORDER BY id", list(doc_rows)):
            out.setdefault(doc, []).append((cid, start, end))
        return out

    def docs(self, doc_rows: Sequence[int]) -> dict[int, dict[str, Any]]:
        """{doc row: {"id", "title", "text", "content", "metadata"}}."""
        out: dict[int, dict[str, Any]] = {}
        marks = ",".join("?" * len(doc_rows))
        for row, ext, title, text, meta in self.db.execute(
                f"SELECT id, ext_id, title, text, metadata FROM docs WHERE id IN ({marks})", list(doc_rows)):
            out[row] = {"id": ext, "title": title, "text": text, "content": _content(title, text),
                        "metadata": json.loads(meta)}
        return out

    def all_docs(self, batch: int = 1024):
        """(row ids, contents) of every document in row order, `batch` at a time (BM25 is rebuilt from these)."""
        last = -1
        while True:
            rows = self.db.execute("SELECT id, title, text FROM docs WHERE id > ? ORDER BY id LIMIT ?",
                                   (last, batch)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [r[0] for r in rows], [_content(r[1], r[2]) for r in rows]

    def filtered(self, where: dict[str, Any]) -> tuple[list[int], list[int]]:
        """(doc rows, chunk ids) whose metadata matches every key: a value equals, a list means any of."""
        clauses, params = [], []
        for key, value in where.items():
            if not isinstance(key, str) or not key.replace("_", "").replace("-", "").replace(".", "").isalnum():
                raise InvalidInputError(f"filter key {key!r} must be letters, digits, '_', '-' or '.'")
            path = f'$."{key}"'
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str | int | float | bool) for v in values):
                raise InvalidInputError(f"filter {key!r}: values must be strings, numbers or booleans (or a list)")
            clauses.append(f"json_extract(metadata, ?) IN ({','.join('?' * len(values))})")
            params += [path, *values]
        sql = "SELECT id FROM docs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = [r[0] for r in self.db.execute(sql, params)]
        chunks: list[int] = []
        for at in range(0, len(rows), 500):
            part = rows[at : at + 500]
            chunks += [r[0] for r in self.db.execute(
                f"SELECT id FROM chunks WHERE doc IN ({','.join('?' * len(part))})", part)]
        return rows, chunks
