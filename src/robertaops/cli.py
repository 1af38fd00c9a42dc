"""The `robertaops` command line: embed, classify, ner, fill-mask, tokenize, info, version.

Every command is a thin shell over the Python API (`ro.load(...)` and a `Model` method): it reads inputs in chunks,
calls the model once per chunk and streams JSONL out, so huge files run in bounded memory. torch and the engine are
imported inside the commands, so `robertaops --help` stays fast. Errors a user can cause (RobertaOpsError, bad
usage, unreadable input) print one red `error: ...` line and exit 2; anything else exits 1, with the traceback
only when ROBERTAOPS_DEBUG=1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from typer.core import TyperGroup

from .errors import InvalidInputError, RobertaOpsError

CHUNK = 1024  # inputs per model call: bounded memory, and big enough for token-budget batching to pack well
INPUT_RULES = (
    "Input: FILE, or stdin when FILE is '-' or absent, UTF-8. If the first non-blank line is a JSON object with a "
    '"text" field, the input is JSONL: one object per line, blank lines skipped. Otherwise it is plain text: one '
    "input per line, and an empty line is an empty-string input (a final newline does not add one), so output "
    'line i answers input line i. Output: JSONL, one object per input in input order, with "index" (0-based).'
)


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"


class Pooling(StrEnum):
    cls = "cls"
    mean = "mean"
    max = "max"


class Aggregation(StrEnum):
    none = "none"
    simple = "simple"
    first = "first"
    average = "average"
    max = "max"


# -- options shared by the commands -------------------------------------------------------------------------------
InputArg = Annotated[str | None, typer.Argument(metavar="[FILE|-]", help="input file; '-' or absent: stdin",
                                                show_default=False)]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="checkpoint directory or hub id", show_default="all-MiniLM-L6-v2, packaged offline")]
DTypeOpt = Annotated[DType, typer.Option(help="weights and activations dtype")]
MaxLengthOpt = Annotated[int | None, typer.Option(help="tokens per window", show_default="the model's limit")]
TruncateOpt = Annotated[bool, typer.Option(
    help="cut long inputs to one window instead of splitting them into overlapping windows")]
BatchTokensOpt = Annotated[int | None, typer.Option(
    min=1, help="padded tokens per forward pass", show_default="2048 on CPU, 16384 on GPU")]
DeviceOpt = Annotated[str, typer.Option(help="torch device: cpu, cuda, cuda:1, ...")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="output file", show_default="stdout")]


class _Group(TyperGroup):
    """Runs a command and turns every failure into one line on stderr and an exit code (2 = the user's fault)."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - this is the one place errors become exit codes
            code = _report(exc)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _report(exc: BaseException) -> int:
    if os.environ.get("ROBERTAOPS_DEBUG") == "1":
        traceback.print_exception(exc)
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `robertaops`: the help, as click shows it
        exc.show()
        return 2
    if isinstance(exc, typer.TyperException):  # bad usage: unknown option, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return error(exc.format_message() + hint, 2)
    if isinstance(exc, RobertaOpsError):
        return error(str(exc), 2)
    if isinstance(exc, typer.Abort):
        return error("aborted", 1)
    return error(f"internal error: {type(exc).__name__}: {exc} (set ROBERTAOPS_DEBUG=1 for the traceback)", 1)


def error(message: str, code: int) -> int:
    """Print `error: message` in red on one line of stderr; return the exit code."""
    from rich.console import Console
    from rich.markup import escape

    line = " ".join(str(message).split()) or "unknown error"
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[bold red]error:[/] {escape(line)}")
    return code


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Run RoBERTa-family encoders from the command line: embeddings, classification, NER, "
                       "fill-mask, tokenization.")


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


# -- shared steps of every command --------------------------------------------------------------------------------
def load_model(model: str | None, dtype: DType, max_length: int | None = None, batch_tokens: int | None = None,
               device: str = "cpu"):
    from .api import load

    return load(model, dtype=dtype.value, max_length=max_length, max_batch_tokens=batch_tokens, device=device)


def process(inputs: Inputs, sink: JsonlSink, fn: Callable[[list], Any]) -> None:
    """Feed the inputs through `fn` chunk by chunk into `sink`, with a progress bar when stderr is a terminal."""
    from tqdm import tqdm

    with sink, tqdm(total=inputs.total, unit="B", unit_scale=True, file=sys.stderr, desc="inputs",
                    disable=not sys.stderr.isatty()) as bar:
        for start, items, nbytes in inputs:
            sink.write(start, _call(fn, start, items))
            bar.update(nbytes)


def _call(fn: Callable[[list], Any], start: int, items: list):
    try:
        return fn(items)
    except RobertaOpsError as exc:
        if start == 0:
            raise
        raise type(exc)(f"{exc} (input numbers count from input {start}, the first of this chunk)") from exc


# -- commands -----------------------------------------------------------------------------------------------------
@app.command(epilog=INPUT_RULES)
def embed(
    source: InputArg = None, output: OutputOpt = None,
    pooling: Annotated[Pooling | None, typer.Option(show_default="the model's own")] = None,
    normalize: Annotated[bool, typer.Option(help="L2-normalise the embeddings")] = True,
    model: ModelOpt = None, dtype: DTypeOpt = DType.float32, max_length: MaxLengthOpt = None,
    truncate: TruncateOpt = False, batch_tokens: BatchTokensOpt = None, device: DeviceOpt = "cpu",
) -> None:
    """Embed texts: {"index", "embedding": [...]} per line, or an (n, dim) float32 array with --output x.npy."""
    inputs, m = Inputs(source), load_model(model, dtype, max_length, batch_tokens, device)
    kwargs = dict(pooling=pooling.value if pooling else None, normalize=normalize, truncate=truncate)
    if output and output.endswith(".npy"):
        process(inputs, NpySink(output, m.dimension), lambda xs: m.embed(xs, **kwargs))
    else:
        process(inputs, JsonlSink(output), lambda xs: [{"embedding": e} for e in m.embed(xs, **kwargs).tolist()])


@app.command(epilog=INPUT_RULES + ' JSONL records may add "text_pair" to classify a pair.')
def classify(
    source: InputArg = None, output: OutputOpt = None,
    top_k: Annotated[int, typer.Option(min=0, help="labels per input, best first; 0 = all")] = 1,
    raw_scores: Annotated[bool, typer.Option(help="logits instead of probabilities")] = False,
    model: ModelOpt = None, dtype: DTypeOpt = DType.float32, max_length: MaxLengthOpt = None,
    truncate: TruncateOpt = False, batch_tokens: BatchTokensOpt = None, device: DeviceOpt = "cpu",
) -> None:
    """Classify texts (or pairs): {"index", "labels": [{"label", "score"}, ...]} per line."""
    inputs, m = Inputs(source, pairs=True), load_model(model, dtype, max_length, batch_tokens, device)
    run = lambda xs: m.classify(xs, top_k=top_k or None, raw_scores=raw_scores, truncate=truncate)  # noqa: E731
    process(inputs, JsonlSink(output), lambda xs: [{"labels": r} for r in run(xs)])


@app.command(epilog=INPUT_RULES)
def ner(
    source: InputArg = None, output: OutputOpt = None,
    aggregation: Annotated[Aggregation, typer.Option(help="how tokens group into entities (as in transformers)")]
    = Aggregation.simple,
    model: ModelOpt = None, dtype: DTypeOpt = DType.float32, max_length: MaxLengthOpt = None,
    truncate: TruncateOpt = False, batch_tokens: BatchTokensOpt = None, device: DeviceOpt = "cpu",
) -> None:
    """Tag named entities: {"index", "entities": [{"entity_group", "score", "word", "start", "end"}, ...]}."""
    inputs, m = Inputs(source), load_model(model, dtype, max_length, batch_tokens, device)
    run = lambda xs: m.ner(xs, aggregation=aggregation.value, truncate=truncate)  # noqa: E731
    process(inputs, JsonlSink(output), lambda xs: [{"entities": r} for r in run(xs)])


@app.command("fill-mask", epilog=INPUT_RULES)
def fill_mask(
    source: InputArg = None, output: OutputOpt = None,
    top_k: Annotated[int, typer.Option(min=1, help="candidates per mask")] = 5,
    model: ModelOpt = None, dtype: DTypeOpt = DType.float32, max_length: MaxLengthOpt = None,
    truncate: TruncateOpt = False, batch_tokens: BatchTokensOpt = None, device: DeviceOpt = "cpu",
) -> None:
    """Predict masked tokens: {"index", "predictions": [...]}, a list per mask when a text has several."""
    inputs, m = Inputs(source), load_model(model, dtype, max_length, batch_tokens, device)
    run = lambda xs: m.fill_mask(xs, top_k=top_k, truncate=truncate)  # noqa: E731
    process(inputs, JsonlSink(output), lambda xs: [{"predictions": r} for r in run(xs)])


@app.command(epilog=INPUT_RULES + ' JSONL records may add "text_pair".')
def tokenize(
    source: InputArg = None, output: OutputOpt = None,
    special_tokens: Annotated[bool, typer.Option(help="include special tokens such as <s> and </s>")] = True,
    model: ModelOpt = None,
) -> None:
    """Tokenize texts: {"index", "text", "ids": [...], "tokens": [...]} per line."""
    inputs, m = Inputs(source, pairs=True), load_model(model, DType.float32)

    def run(xs: list) -> list[dict]:
        out = []
        for x, ids in zip(xs, m.tokenize(xs, add_special_tokens=special_tokens), strict=True):
            text = {"text": x} if isinstance(x, str) else {"text": x[0], "text_pair": x[1]}
            out.append({**text, "ids": ids, "tokens": [m.tokenizer.id_to_token(i) for i in ids]})
        return out

    process(inputs, JsonlSink(output), run)


@app.command()
def info(model: ModelOpt = None, dtype: DTypeOpt = DType.float32, max_length: MaxLengthOpt = None,
         device: DeviceOpt = "cpu") -> None:
    """Describe a model as one JSON object: architecture, task, labels, limits, dtype, weights hash."""
    m = load_model(model, dtype, max_length, device=device)
    typer.echo(json.dumps(m.info(), indent=2, ensure_ascii=False))


@app.command()
def version() -> None:
    """Print the robertaops version."""
    from importlib.metadata import version as dist_version  # not `from . import __version__`: cli sits above it

    typer.echo(f"robertaops {dist_version('robertaops')}")


def main() -> None:
    """Console-script entry point (`robertaops = "robertaops.cli:main"`)."""
    app()


if __name__ == "__main__":
    main()
