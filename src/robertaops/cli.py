"""The `robertaops` command line: embed, classify, ner, fill-mask, tokenize, info, serve, keys, version.

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
from collections.abc import Callable
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .cli_io import INPUT_RULES, Inputs, JsonlSink, NpySink
from .errors import RobertaOpsError


class DType(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    int8 = "int8"  # W8A8 Linears, CPU (model/quantize.py)
    auto = "auto"  # the fastest path within accuracy bounds on this hardware


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


# -- serving ------------------------------------------------------------------------------------------------------
def _opt(help: str, **kw: Any) -> Any:
    return typer.Option(help=help, show_default=False, **kw)


@app.command()
def serve(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="NAME=PATH_OR_ID or NAME=models:/REG@ALIAS, "
                                                    "repeatable; the first is the default",
                                                    show_default="all-MiniLM-L6-v2")] = None,
    host: Annotated[str | None, _opt("address to bind")] = None,
    port: Annotated[int | None, _opt("port", min=0, max=65535)] = None,
    dtype: Annotated[DType | None, _opt("weights and activations dtype")] = None,
    device: Annotated[str | None, _opt("torch device")] = None,
    max_length: Annotated[int | None, _opt("tokens per window")] = None,
    max_batch_tokens: Annotated[int | None, _opt("padded tokens per forward pass", min=1)] = None,
    max_batch_requests: Annotated[int | None, _opt("inputs per forward pass", min=1)] = None,
    max_concurrent_requests: Annotated[int | None, _opt("queued inputs before 429", min=1)] = None,
    trace_layers: Annotated[bool | None, _opt("CPU float models: each layer one TorchScript call, without the GIL "
                                              "(plain MKL Linears instead of oneDNN's packed ones; default: "
                                              "float32 on Intel CPUs)")] = None,
    model_workers: Annotated[int | None, _opt("batches run at once per model, sharing the torch threads "
                                              "(default: 2 on a CPU, 1 on a GPU)",
                                              min=1, max=64)] = None,
    loop_nice: Annotated[int | None, _opt("niceness added to the event-loop thread once models are warm "
                                          "(0 = off)", min=0, max=19)] = None,
    max_client_batch_size: Annotated[int | None, _opt("inputs per request before 422", min=1)] = None,
    payload_limit: Annotated[int | None, _opt("request body bytes before 413", min=1)] = None,
    request_timeout: Annotated[float | None, _opt("seconds before 504", min=0.001)] = None,
    api_keys: Annotated[Path | None, _opt("key file (see `robertaops keys add`); none = open server")] = None,
    rate_limit: Annotated[float | None, _opt("requests per second per key", min=0.001)] = None,
    rate_burst: Annotated[int | None, _opt("token-bucket burst per key", min=1)] = None,
    log_inputs: Annotated[bool | None, _opt("log raw inputs instead of their sha256")] = None,
    otlp_endpoint: Annotated[str | None, _opt("OTLP/HTTP traces endpoint")] = None,
    rollout: Annotated[list[str] | None, _opt('a canary or shadow as JSON, repeatable: {"model": "a", "candidate": '
                                             '"b", "mode": "canary", "fraction": 0.1, "max_error_rate": 0.05}')] = None,
    cascade: Annotated[list[str] | None, _opt('a model cascade as JSON, repeatable: {"name": "fast", "small": "a", '
                                             '"large": "b", "threshold": 0.9}')] = None,
    watch: Annotated[bool | None, _opt("reload a models:/NAME@ALIAS model when its alias moves")] = None,
    watch_interval: Annotated[float | None, _opt("seconds between registry polls with --watch", min=0.1)] = None,
    drift_reference: Annotated[list[str] | None, _opt("NAME=REF.npz from `robertaops drift fit`, repeatable: "
                                                     "online drift gauges for that model")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Serve models over HTTP: TEI- and OpenAI-compatible APIs, /metrics, /health.

    Every flag falls back to its ROBERTAOPS_* environment variable (e.g. ROBERTAOPS_MAX_BATCH_TOKENS), then to the
    built-in default."""
    import uvicorn

    from .serving.app import create_app
    from .serving.logging import configure
    from .settings import Settings

    given = dict(models=model, host=host, port=port, dtype=dtype, device=device, max_length=max_length,
                 trace_layers=trace_layers,
                 max_batch_tokens=max_batch_tokens, max_batch_requests=max_batch_requests,
                 max_concurrent_requests=max_concurrent_requests, model_workers=model_workers, loop_nice=loop_nice,
                 max_client_batch_size=max_client_batch_size,
                 payload_limit=payload_limit, request_timeout=request_timeout, api_keys=api_keys,
                 rate_limit=rate_limit, rate_burst=rate_burst, log_inputs=log_inputs, otlp_endpoint=otlp_endpoint,
                 rollouts=rollout, cascades=cascade, watch=watch, watch_interval=watch_interval,
                 drift_references=drift_reference)
    try:  # explicit flags win over ROBERTAOPS_* variables, which win over the defaults
        settings = Settings(**{k: v.value if isinstance(v, Enum) else v for k, v in given.items() if v is not None})
        settings.model_specs()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise RobertaOpsError(" ".join(str(exc).split())) from None
    configure(log_level.upper())
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)


keys_app = typer.Typer(cls=_Group, no_args_is_help=True, help="API keys for `robertaops serve --api-keys FILE`.")
app.add_typer(keys_app, name="keys")
from .cli_drift import register as _register_drift  # noqa: E402 - drift fit + report (cli_drift.py)

_register_drift(app)
from .cli_registry import register as _register_registry  # noqa: E402 - model registry (cli_registry.py)

_register_registry(app)
from .cli_compress import register as _register_compress  # noqa: E402 - quantize (cli_compress.py)

_register_compress(app)
from .cli_pretrain import register as _register_pretrain  # noqa: E402 - pretrain + tokenizer train (cli_pretrain.py)

_register_pretrain(app)
from .cli_search import register as _register_search  # noqa: E402 - index, search, batch (cli_search.py)

_register_search(app)
from .cli_train import register as _register_train  # noqa: E402 - finetune + evaluate (cli_train.py)

_register_train(app)
from .cli_warmup import register as _register_warmup  # noqa: E402 - warm-up: the kernel cache (cli_warmup.py)

_register_warmup(app)


@keys_app.command("add")
def keys_add(
    file: Annotated[Path, typer.Option("--file", "-f", help="key file; created if missing")],
    role: Annotated[list[str], typer.Option(help="infer or admin; repeatable")] = ["infer"],  # noqa: B006
    name: Annotated[str | None, typer.Option(help="a label for logs", show_default="key-N")] = None,
) -> None:
    """Create an API key: print it once on stdout and append its sha256 (never the key) to FILE."""
    from .serving.auth import add_key

    typer.echo(add_key(file, role, name))


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
