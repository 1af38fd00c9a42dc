"""Input and output streams of the CLI: chunked, line-numbered reading of text/JSONL, and JSONL/.npy writers.

Reading is byte by byte per line so that invalid UTF-8 is reported with its line number; writers put results in a
`.partial` file renamed only when the run succeeds, so a failed run leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import typer

from .errors import InvalidInputError

CHUNK = 1024  # inputs per model call: bounded memory, and big enough for token-budget batching to pack well
INPUT_RULES = (
    "Input: FILE, or stdin when FILE is '-' or absent, UTF-8. If the first non-blank line is a JSON object with a "
    '"text" field, the input is JSONL: one object per line, blank lines skipped. Otherwise it is plain text: one '
    "input per line, and an empty line is an empty-string input (a final newline does not add one), so output "
    'line i answers input line i. Output: JSONL, one object per input in input order, with "index" (0-based).'
)


# -- input --------------------------------------------------------------------------------------------------------
class Inputs:
    """The input, opened at once (so a missing file fails before the model loads) and read in chunks.

    Iterating yields (index of the chunk's first input, its inputs, bytes read) per chunk of at most `chunk`
    inputs. Bytes are decoded line by line, so invalid UTF-8 is reported with its line number. The format (JSONL
    or plain text) is decided by the first non-blank line; see INPUT_RULES. `pairs`: JSONL may give "text_pair".
    """

    def __init__(self, source: str | None, *, pairs: bool = False, chunk: int | None = None):
        self.pairs, self.chunk, self.total = pairs, chunk or CHUNK, None
        if source in (None, "-"):
            if sys.stdin.isatty():
                typer.echo("reading texts from stdin, one per line (Ctrl-D ends)", err=True)
            self.name, self.stream, self.owned = "<stdin>", sys.stdin.buffer, False
            return
        path = Path(source)
        if not path.exists():
            raise InvalidInputError(f"input file {source!r} does not exist")
        if path.is_dir():
            raise InvalidInputError(f"input {source!r} is a directory; give a file, or '-' for stdin")
        try:
            self.stream = open(path, "rb")  # noqa: SIM115 - closed when iteration ends
        except OSError as exc:
            raise InvalidInputError(f"cannot read input file {source!r}: {exc.strerror}") from exc
        self.name, self.owned, self.total = source, True, path.stat().st_size

    def __iter__(self) -> Iterator[tuple[int, list, int]]:
        name, chunk = self.name, self.chunk
        mode = None  # "jsonl" | "text", decided by the first non-blank line
        batch: list = []
        start = consumed = blanks = 0
        try:
            for number, raw in enumerate(self.stream, 1):
                consumed += len(raw)
                line = _decode(raw, number, name)
                if mode is None:
                    if not line.strip():
                        blanks += 1  # leading blank lines: inputs in a text file, nothing in a JSONL one
                        continue
                    mode = "jsonl" if _record(line) is not None else "text"
                    batch += [""] * blanks if mode == "text" else []
                if mode == "text":
                    batch.append(line)
                elif line.strip():
                    batch.append(_parse_record(line, number, name, self.pairs))
                while len(batch) >= chunk:
                    yield start, batch[:chunk], consumed
                    start, batch, consumed = start + chunk, batch[chunk:], 0
            if mode is None:
                batch = [""] * blanks
            for at in range(0, len(batch), chunk):
                yield start + at, batch[at : at + chunk], consumed if at == 0 else 0
        finally:
            if self.owned:
                self.stream.close()


def _decode(raw: bytes, number: int, name: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{name}: line {number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None
    if number == 1 and text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark, as some editors write
    if text.endswith("\n"):
        text = text[:-1]
    return text[:-1] if text.endswith("\r") else text


def _record(line: str) -> dict | None:
    """The JSON object on this line if it is one with a "text" field, else None."""
    if not line.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and "text" in obj else None


def _parse_record(line: str, number: int, name: str, pairs: bool):
    obj = _record(line)
    if obj is None:
        raise InvalidInputError(f'{name}: line {number} is not a JSON object with a "text" field '
                                "(the input is JSONL because its first line is)")
    text, pair = obj["text"], obj.get("text_pair")
    for key, value in (("text", text), ("text_pair", pair)):
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f'{name}: line {number}: "{key}" must be a string, got {type(value).__name__}')
    if pair is None:
        return text
    if not pairs:
        raise InvalidInputError(f'{name}: line {number}: "text_pair" is accepted only by classify and tokenize')
    return (text, pair)


# -- output -------------------------------------------------------------------------------------------------------
class JsonlSink:
    """One JSON object per input, `{"index": i, **result}`; to a file (written whole or not at all) or stdout."""

    def __init__(self, path: str | None):
        self.path = None if path in (None, "-") else Path(path)
        self.tmp = self.path.with_name(self.path.name + ".partial") if self.path else None
        sys.stdout.flush()  # bytes go to stdout's buffer: JSONL is UTF-8 whatever the locale
        self.stream = _open_output(self.tmp) if self.tmp else sys.stdout.buffer

    def write(self, start: int, results: list) -> None:
        lines = (json.dumps({"index": start + k, **r}, ensure_ascii=False, separators=(",", ":"),
                            default=lambda v: v.tolist()) for k, r in enumerate(results))  # numpy leftovers
        self.stream.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if self.tmp:
            self.stream.close()
            if exc is None:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


class NpySink(JsonlSink):
    """An (n, dim) float32 .npy file, streamed: the header (fixed size, numpy leaves room for the row count to
    grow) is written first and rewritten with the final row count at the end."""

    def __init__(self, path: str, dim: int):
        super().__init__(path)
        self.dim, self.rows = dim, 0
        self.header = self._header()
        self.stream.write(self.header)

    def _header(self) -> bytes:
        import io

        import numpy as np

        buf = io.BytesIO()
        header = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)}
        np.lib.format.write_array_header_1_0(buf, header)
        return buf.getvalue()

    def write(self, start: int, results) -> None:
        self.stream.write(results.astype("<f4", copy=False).tobytes())
        self.rows += len(results)

    def __exit__(self, kind, exc, tb) -> None:
        if exc is None:
            header = self._header()
            assert len(header) == len(self.header), "numpy pads .npy headers so the row count can grow"
            self.stream.seek(0)
            self.stream.write(header)
        super().__exit__(kind, exc, tb)


def _open_output(path: Path) -> IO[bytes]:
    try:
        return open(path, "wb")  # noqa: SIM115 - closed by the sink
    except OSError as exc:
        raise InvalidInputError(f"cannot write output file {str(path).removesuffix('.partial')!r}: "
                                f"{exc.strerror}") from exc
