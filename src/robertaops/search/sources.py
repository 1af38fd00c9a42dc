"""Reading documents and tables: BEIR corpus.jsonl, CSV/TSV, Parquet; BEIR queries and qrels.

Everything is streamed in batches so a corpus of millions of rows never sits in memory whole. Bad input fails
with the file and the row or column at fault, never with a traceback from pandas or pyarrow.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, choices

FORMATS = ("jsonl", "csv", "tsv", "parquet")
BATCH = 1024  # rows per batch: big enough for token-budget packing, small enough for flat memory


@dataclass
class Doc:
    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """What gets embedded and matched: the title, a space, the text (BEIR's convention)."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


def format_of(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InvalidInputError(f"unknown format {fmt!r}; choose {choices(FORMATS)}")
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    known = {"jsonl": "jsonl", "json": "jsonl", "ndjson": "jsonl", "csv": "csv", "tsv": "tsv", "parquet": "parquet",
             "pq": "parquet"}
    if suffix not in known:
        raise InvalidInputError(f"cannot tell the format of {str(path)!r} from its suffix; name files .jsonl, .csv, "
                                f".tsv or .parquet (or pass --format {'|'.join(FORMATS)})")
    return known[suffix]


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"input file {str(p)!r} does not exist")
    if p.is_dir() and not (p / "_SUCCESS").exists() and not any(p.glob("*.parquet")):
        raise InvalidInputError(f"input {str(p)!r} is a directory; give a file")
    return p


def read_rows(path: str | Path, fmt: str | None = None, batch: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    """Rows as dicts, `batch` at a time, from JSONL, CSV, TSV or Parquet (a file, or a directory of parts)."""
    p = _existing(path)
    kind = "parquet" if p.is_dir() else format_of(p, fmt)
    if kind == "parquet":
        yield from _parquet_rows(p, batch)
        return
    try:
        with open(p, encoding="utf-8", newline="") as f:
            if kind == "jsonl":
                yield from _batched(_jsonl(f, str(p)), batch)
            else:
                reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
                yield from _batched(reader, batch)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{p}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise InvalidInputError(f"{p}: not valid {kind.upper()}: {exc}") from None


def _jsonl(f, name: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{name}: line {number} is not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InvalidInputError(f"{name}: line {number} is not a JSON object")
        yield row


def _parquet_rows(p: Path, batch: int) -> Iterator[list[dict[str, Any]]]:
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(str(p), format="parquet")
        for record_batch in dataset.to_batches(batch_size=batch):
            if record_batch.num_rows:
                yield record_batch.to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InvalidInputError(f"{p}: not a readable Parquet file ({exc})") from None


def _batched(rows, size: int) -> Iterator[list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    for row in rows:
        out.append(row)
        if len(out) >= size:
            yield out
            out = []
    if out:
        yield out


def read_docs(path: str | Path, *, id_column: str | None = None, text_column: str = "text",
              title_column: str | None = "title", fmt: str | None = None,
              batch: int = BATCH) -> Iterator[list[Doc]]:
    """Documents in batches. BEIR's corpus.jsonl works as is (`_id`, `title`, `text`, `metadata`); other tables
    name their id and text columns. Columns besides id/title/text become metadata (filterable)."""
    seen_header = False
    for rows in read_rows(path, fmt, batch):
        if not seen_header:
            seen_header = True
            first = rows[0]
            id_column = id_column or ("_id" if "_id" in first else "id")
            for name, col in (("id", id_column), ("text", text_column)):
                if col not in first:
                    raise InvalidInputError(f"{path}: no {name} column {col!r}; columns: {', '.join(map(str, first))} "
                                            f"(choose with --{name}-column)")
        yield [_doc(row, id_column, text_column, title_column, path) for row in rows]


def _doc(row: dict, id_column: str, text_column: str, title_column: str | None, path) -> Doc:
    doc_id, text = row.get(id_column), row.get(text_column)
    if doc_id is None or doc_id == "":
        raise InvalidInputError(f"{path}: a row has no {id_column!r}: {str(row)[:80]}")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InvalidInputError(f"{path}: document {doc_id}: {text_column!r} must be a string, "
                                f"got {type(text).__name__}")
    title = row.get(title_column) if title_column else None
    meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
    extra = {k: v for k, v in row.items() if k not in (id_column, text_column, title_column, "metadata")}
    return Doc(str(doc_id), text, title if isinstance(title, str) else "", {**meta, **extra})


def read_queries(path: str | Path) -> dict[str, str]:
    """BEIR queries.jsonl -> {query id: text} (also accepts `id` for the id)."""
    out = {}
    for rows in read_rows(path, "jsonl" if str(path).endswith(".jsonl") else None):
        for row in rows:
            qid = row.get("_id", row.get("id"))
            if qid is None or not isinstance(row.get("text"), str):
                raise InvalidInputError(f"{path}: every query needs an `_id` and a string `text`; got {str(row)[:80]}")
            out[str(qid)] = row["text"]
    return out


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (query-id, corpus-id, score; a header line) -> {query id: {doc id: relevance}}."""
    p = _existing(path)
    qrels: dict[str, dict[str, int]] = {}
    with open(p, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if number == 1 and parts and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            try:
                qid, did, score = parts[0], parts[1], int(parts[2])
            except (IndexError, ValueError):
                raise InvalidInputError(f"{p}: line {number}: expected 'query-id<TAB>corpus-id<TAB>score'") from None
            qrels.setdefault(qid, {})[did] = score
    return qrels
