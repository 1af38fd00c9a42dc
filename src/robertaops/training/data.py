"""Labelled data for fine-tuning and evaluation: CSV / TSV / JSONL tables and CoNLL token files.

Columns are chosen by name or by 0-based index (a spec made of digits is an index). Whether a table has a header is
detected: the first row is a header when it holds every named column, or (all specs are indices) when its label
cell looks like no other label in the file. Every example remembers its file line, so a bad row, or a label the
model does not know, is reported as `file:line`. `skip_bad_rows=True` skips and counts bad rows instead.

TSV is split on tabs without quote handling (GLUE and STS files hold unbalanced `"` inside sentences); CSV uses
the csv module's quoting; both are read as UTF-8 with an optional BOM (MRPC has one).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "conll")
_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".conll": "conll",
           ".txt": "conll"}
HEADER_PROBE = 2000  # rows looked at to decide whether the first row is a header


@dataclass
class Example:
    """One labelled row: text (and pair), label as written in the file (str, float or list for multi-label)."""

    text: str
    pair: str | None
    label: object
    line: int


@dataclass
class Sentence:
    """One CoNLL sentence: words and their tags."""

    words: list[str]
    tags: list[str]
    line: int  # line of its first word


@dataclass
class Loaded:
    """Rows read from one file, and how many bad ones were skipped (with the first few locations)."""

    path: Path
    rows: list = field(default_factory=list)
    skipped: int = 0
    skipped_at: list[str] = field(default_factory=list)


class _Bad(Exception):
    """A row-level problem; becomes a DataError naming file:line, or a skip."""


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise DataError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return fmt
    found = _SUFFIX.get(path.suffix.lower())
    if found is None:
        raise DataError(f"cannot tell the format of {path} from its suffix; pass --format ({', '.join(FORMATS)})")
    return found


def _open(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read data file {path}: {exc}") from exc


def _rows(path: Path, fmt: str, text: str) -> Iterator[tuple[int, object]]:
    """(line number, cells list or JSON object) for every non-blank row."""
    # split("\n"), not splitlines(): the latter also breaks on \x0b, \x1c, U+2028... found inside real sentences
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if fmt == "tsv":
        for n, line in enumerate(lines, 1):
            if line.strip():
                yield n, line.split("\t")
    elif fmt == "csv":
        reader = csv.reader(io.StringIO(text))
        try:
            for cells in reader:
                if any(c.strip() for c in cells):
                    yield reader.line_num, cells
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: unreadable CSV: {exc}") from exc
    else:
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except ValueError as exc:
                    yield n, _Bad(f"not valid JSON ({exc.msg})")


def _is_index(spec: str) -> bool:
    return spec.isdigit()


def read_table(path: str | Path, *, text_column: str, label_column: str | None, pair_column: str | None = None,
               fmt: str | None = None, header: bool | None = None, label_kind: str = "class",
               label_separator: str = ",", skip_bad_rows: bool = False) -> Loaded:
    """Read labelled rows. label_kind: 'class' (str), 'multi' (list of str), 'score' (float) or 'none'."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt == "conll":
        raise DataError(f"{path} is a CoNLL file; this task reads csv, tsv or jsonl tables")
    specs = {"text": text_column, "pair": pair_column, "label": label_column if label_kind != "none" else None}
    rows = list(_rows(path, fmt, _open(path)))
    out = Loaded(path)
    if fmt == "jsonl":
        index = None
    else:
        index, header_line = _columns(path, rows, specs, header)
        if header_line:
            rows = rows[1:]
    for n, raw in rows:
        try:
            if isinstance(raw, _Bad):
                raise raw
            cells = _pick(raw, specs, index)
            out.rows.append(Example(cells["text"], cells["pair"], _label(cells["label"], label_kind,
                                                                      label_separator), n))
        except _Bad as exc:
            if not skip_bad_rows:
                raise DataError(f"{path}:{n}: {exc} (pass --skip-bad-rows to skip such rows)") from None
            out.skipped += 1
            if len(out.skipped_at) < 5:
                out.skipped_at.append(f"{path}:{n}: {exc}")
    if not out.rows:
        raise DataError(f"{path}: no usable rows" + (f" ({out.skipped} bad rows skipped)" if out.skipped else ""))
    return out


def _columns(path: Path, rows: list, specs: dict, header: bool | None) -> tuple[dict[str, int | None], bool]:
    """Column positions for each spec, and whether the first row is a header."""
    if not rows:
        raise DataError(f"{path} is empty")
    first = [c.strip() for c in rows[0][1]]
    named = [s for s in specs.values() if s is not None and not _is_index(s)]
    if header is None:
        if named:
            header = all(s in first for s in named)
        else:
            header = _looks_like_header(rows, specs)
    if named and not header:
        missing = [s for s in named if s not in first]
        raise DataError(f"{path}: no column named {', '.join(map(repr, missing))}; its first row is "
                        f"{first[:10]!r} (give columns by 0-based index if the file has no header)")
    index: dict[str, int | None] = {}
    for key, spec in specs.items():
        if spec is None:
            index[key] = None
        elif _is_index(spec):
            index[key] = int(spec)
        elif spec not in first:
            raise DataError(f"{path}: no column named {spec!r}; columns: {', '.join(map(repr, first))}")
        else:
            index[key] = first.index(spec)
    return index, header


def _looks_like_header(rows: list, specs: dict) -> bool:
    """With index-only specs: the first row is a header when its label cell is unlike every other label (a
    non-number over numeric labels, or a value that never recurs)."""
    col = specs["label"]
    if col is None:
        return False
    col = int(col)
    cells = [r[col].strip() for _, r in rows[1:HEADER_PROBE] if isinstance(r, list) and len(r) > col]
    first = rows[0][1][col].strip() if len(rows[0][1]) > col else ""
    if not cells:
        return False

    def number(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    if all(number(c) for c in cells):
        return not number(first)
    return first not in set(cells)


def _pick(raw: object, specs: dict, index: dict | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, spec in specs.items():
        if spec is None:
            out[key] = None
            continue
        if index is None:  # JSONL: a name is a key; an index means the n-th key of the object
            if not isinstance(raw, dict):
                raise _Bad(f"expected a JSON object, got {type(raw).__name__}")
            if spec in raw:
                value = raw[spec]
            elif _is_index(spec) and int(spec) < len(raw):
                value = list(raw.values())[int(spec)]
            else:
                raise _Bad(f"no field {spec!r} (fields: {', '.join(map(repr, raw))})")
        else:
            cells = raw
            i = index[key]
            if i >= len(cells):
                raise _Bad(f"{len(cells)} columns, column {i} ({spec!r}) is missing")
            value = cells[i]
        if key in ("text", "pair"):
            if not isinstance(value, str) or not value.strip():
                raise _Bad(f"empty or non-text {key} field {spec!r}: {value!r}")
            value = value.strip()
        out[key] = value
    return out


def _label(value: object, kind: str, separator: str) -> object:
    if kind == "none":
        return None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Bad("empty label")
    if kind == "score":
        try:
            score = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _Bad(f"label {value!r} is not a number") from None
        if score != score:
            raise _Bad("label is NaN")
        return score
    if kind == "multi":
        parts = value if isinstance(value, list) else [p for p in str(value).split(separator)]
        labels = sorted({str(p).strip() for p in parts if str(p).strip()})
        return labels
    if isinstance(value, bool | list | dict):
        raise _Bad(f"label {value!r} is not a single class")
    return str(value).strip()


def read_conll(path: str | Path, *, skip_bad_rows: bool = False) -> Loaded:
    """Sentences from a CoNLL file: token in the first column, tag in the last, blank lines between sentences,
    `-DOCSTART-` lines ignored. A token line with a single column (no tag) is a bad row."""
    path = Path(path)
    out = Loaded(path)
    words: list[str] = []
    tags: list[str] = []
    start = 0

    def flush():
        if words:
            out.rows.append(Sentence(list(words), list(tags), start))
        words.clear()
        tags.clear()

    for n, line in enumerate(_open(path).split("\n"), 1):
        cells = line.split()
        if not cells:
            flush()
            continue
        if cells[0] == "-DOCSTART-":
            flush()
            continue
        if len(cells) < 2:
            message = f"{path}:{n}: a token line needs a tag in its last column, got {line.strip()!r}"
            if not skip_bad_rows:
                raise DataError(message + " (pass --skip-bad-rows to skip such rows)")
            out.skipped += 1
            if len(out.skipped_at) < 5:
                out.skipped_at.append(message)
            continue
        if not words:
            start = n
        words.append(cells[0])
        tags.append(cells[-1])
    flush()
    if not out.rows:
        raise DataError(f"{path}: no sentences found")
    return out


def label_list(values: Sequence[object], kind: str) -> list[str]:
    """The label set of a training file, in a stable order: numbers numerically, CoNLL 'O' first then by type."""
    flat: set[str] = set()
    for v in values:
        flat.update(v if isinstance(v, list) else [v])  # type: ignore[arg-type]
    if kind == "tags":
        return sorted(flat, key=lambda t: (t != "O", t[2:] if t[1:2] == "-" else t, t))
    try:
        return sorted(flat, key=float)
    except ValueError:
        return sorted(flat)


def check_labels(rows: Sequence, label2id: dict[str, int], path: Path) -> None:
    """Check every label is one the model knows; the error names the first unknown label and its file:line."""
    for row in rows:
        values = row.tags if isinstance(row, Sentence) else (row.label if isinstance(row.label, list) else [row.label])
        for v in values:
            if v not in label2id:
                known = ", ".join(map(repr, label2id))
                raise DataError(f"{path}:{row.line}: unknown label {v!r}; the model knows {known}")


def joined_words(sentences: list) -> tuple[list[str], list[list[int]]]:
    """CoNLL sentences -> (texts with words joined by single spaces, each word's character start in its text)."""
    texts, starts = [], []
    for s in sentences:
        pos, begin = 0, []
        for w in s.words:
            begin.append(pos)
            pos += len(w) + 1
        texts.append(" ".join(s.words))
        starts.append(begin)
    return texts, starts
