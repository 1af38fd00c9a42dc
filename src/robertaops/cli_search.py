"""CLI for search and batch embedding: `robertaops index ...`, `robertaops search ...`, `robertaops batch embed`.

`register(app)` adds the three command groups to the main app (cli.py). As in cli.py, heavy imports (torch, faiss,
the engine) happen inside the commands, and user errors are RobertaOpsErrors that the main app prints as one
`error: ...` line with exit code 2. `robertaops search "query" --index DIR` runs a query; `robertaops search eval`
evaluates: the group routes any first argument that is not a subcommand to `search query`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup


class Mode(StrEnum):
    dense = "dense"
    lexical = "lexical"
    hybrid = "hybrid"


class Fusion(StrEnum):
    rrf = "rrf"
    weighted = "weighted"


class Kind(StrEnum):
    auto = "auto"
    flat = "flat"
    pq = "pq"
    hnsw = "hnsw"
    ivf = "ivf"


class Engine(StrEnum):
    local = "local"
    spark = "spark"


class _SearchGroup(TyperGroup):
    """`search QUERY ...` is `search query QUERY ...`; `search eval ...` stays a subcommand."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["query", *args]
        return super().parse_args(ctx, args)


IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="index directory")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="checkpoint directory or hub id",
                                              show_default="the index's own model")]
CorpusOpt = Annotated[Path, typer.Option("--corpus", "-c", help="BEIR corpus.jsonl, CSV/TSV or Parquet")]
IdCol = Annotated[str | None, typer.Option(help="id column", show_default="_id, else id")]
TextCol = Annotated[str, typer.Option(help="text column")]
TitleCol = Annotated[str, typer.Option(help="title column (optional; '' for none)")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="jsonl, csv, tsv or parquet",
                                               show_default="from the file suffix")]
ProgressOpt = Annotated[bool | None, typer.Option(help="progress bar", show_default="when stderr is a terminal")]

index_app = typer.Typer(no_args_is_help=True, help="Build and maintain a search index (FAISS + BM25 + SQLite).")
search_app = typer.Typer(cls=_SearchGroup, no_args_is_help=True,
                         help="Query an index: `robertaops search \"QUERY\" --index DIR`, or `search eval`.")
batch_app = typer.Typer(no_args_is_help=True, help="Batch jobs over tables of texts.")


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.add_typer(search_app, name="search")
    app.add_typer(batch_app, name="batch")


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


def _load(model: str | None):
    from .api import load

    return load(model)


def _docs(corpus: Path, id_column, text_column, title_column, fmt):
    from .search.sources import read_docs

    return read_docs(corpus, id_column=id_column, text_column=text_column, title_column=title_column or None, fmt=fmt)


# -- index ----------------------------------------------------------------------------------------------------------
@index_app.command("build")
def index_build(
    corpus: CorpusOpt, index: IndexOpt, model: Annotated[str | None, typer.Option(
        "--model", "-m", help="checkpoint directory or hub id", show_default="all-MiniLM-L6-v2")] = None,
    id_column: IdCol = None, text_column: TextCol = "text", title_column: TitleCol = "title",
    fmt: FormatOpt = None,
    kind: Annotated[Kind, typer.Option(help="FAISS index: flat (exact), pq (compressed scan + exact "
                                                      "re-rank), hnsw, ivf; auto picks by size")] = Kind.auto,
    int8: Annotated[bool, typer.Option(help="store 8-bit quantised vectors (4x smaller)")] = False,
    truncate: Annotated[bool, typer.Option(help="embed only each document's first window")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing index in DIR")] = False,
    progress: ProgressOpt = None,
) -> None:
    """Build an index: embed every document (long ones as several chunks), BM25, SQLite, manifest."""
    from .search import writer

    docs = _docs(corpus, id_column, text_column, title_column, fmt)
    m = _load(model)
    _echo(writer.build(index, docs, m, model, kind=kind.value, int8=int8, truncate=truncate, overwrite=overwrite,
                       progress=progress))


@index_app.command("add")
def index_add(
    corpus: CorpusOpt, index: IndexOpt, model: ModelOpt = None, id_column: IdCol = None,
    text_column: TextCol = "text", title_column: TitleCol = "title", fmt: FormatOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Add documents; one whose id is already indexed is replaced (an update). Only these are embedded."""
    from .search import writer
    from .search.index import Index

    docs = _docs(corpus, id_column, text_column, title_column, fmt)
    m = Index.open(index).model(_load(model) if model else None)
    _echo(writer.add(index, docs, m, progress=progress))


@index_app.command("delete")
def index_delete(
    index: IndexOpt, ids: Annotated[list[str] | None, typer.Argument(help="document ids")] = None,
    ids_file: Annotated[Path | None, typer.Option(help="a file of ids, one per line")] = None,
    missing_ok: Annotated[bool, typer.Option(help="ignore ids that are not in the index")] = False,
) -> None:
    """Delete documents by id."""
    from .errors import InvalidInputError
    from .search import writer

    wanted = list(ids or [])
    if ids_file is not None:
        if not ids_file.is_file():
            raise InvalidInputError(f"ids file {str(ids_file)!r} does not exist")
        wanted += [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not wanted:
        raise InvalidInputError("no document ids given (as arguments or with --ids-file)")
    _echo(writer.delete(index, wanted, missing_ok=missing_ok))


@index_app.command("info")
def index_info(index: IndexOpt) -> None:
    """The manifest (model, version checksums, index kind, counts) and size on disk, as JSON."""
    from .search.index import Index

    typer.echo(json.dumps(Index.open(index).info(), indent=2, ensure_ascii=False))


@index_app.command("rebuild")
def index_rebuild(
    index: IndexOpt, model: ModelOpt = None,
    kind: Annotated[Kind | None, typer.Option(help="change the FAISS index kind", show_default="unchanged")] = None,
    progress: ProgressOpt = None,
) -> None:
    """Re-embed every document, with --model (a new model version) or the index's own model."""
    from .search import writer
    from .search.manifest import current, read_manifest

    source = model if model is not None else read_manifest(current(index))["model"]["source"]
    _echo(writer.rebuild(index, _load(source), source, kind=kind.value if kind else None, progress=progress))


# -- search ---------------------------------------------------------------------------------------------------------
def _filters(values: list[str] | None) -> dict[str, Any] | None:
    from .errors import InvalidInputError

    if not values:
        return None
    out: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"filter {v!r} must be KEY=VALUE (VALUE as JSON when it parses, else a string)")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(key, []).append(value)
    return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


ModeOpt = Annotated[Mode, typer.Option(help="dense, lexical (BM25) or hybrid")]
FusionOpt = Annotated[Fusion, typer.Option(help="hybrid fusion: reciprocal rank fusion or weighted scores")]
AlphaOpt = Annotated[float, typer.Option(min=0, max=1, help="weighted fusion: weight of the dense score")]
RrfOpt = Annotated[int, typer.Option(min=1, help="RRF constant k")]


@search_app.command("query", hidden=True)
def search_query(
    query: Annotated[str, typer.Argument(help="the query text")], index: IndexOpt,
    mode: ModeOpt = Mode.dense, k: Annotated[int, typer.Option("-k", "--k", min=1, help="hits")] = 10,
    filter: Annotated[list[str] | None, typer.Option(
        "--filter", help="KEY=VALUE on metadata, repeatable (same key twice: any of)")] = None,
    fusion: FusionOpt = Fusion.rrf, alpha: AlphaOpt = 0.5, rrf_k: RrfOpt = 60,
    rerank: Annotated[str | None, typer.Option(help="cross-encoder checkpoint to rerank the top hits")] = None,
    rerank_top: Annotated[int, typer.Option(min=1, help="hits to rerank")] = 20,
    model: ModelOpt = None,
) -> None:
    """Search: one JSON object per hit, best first ({"rank", "id", "score", "title", "chunk", "metadata"})."""
    from .search.index import Index

    ix = Index.open(index)
    m = _load(model) if model and mode != Mode.lexical else None
    hits = ix.search(query, mode=mode.value, k=k, model=m, fusion=fusion.value, alpha=alpha, rrf_k=rrf_k,
                     where=_filters(filter), rerank=_load(rerank) if rerank else None, rerank_top=rerank_top)
    for rank, hit in enumerate(hits, 1):
        hit.pop("text")
        _echo({"rank": rank, **hit})


@search_app.command("eval")
def search_eval(
    index: IndexOpt, queries: Annotated[Path, typer.Option(help="BEIR queries.jsonl")],
    qrels: Annotated[Path, typer.Option(help="BEIR qrels TSV (query-id, corpus-id, score)")],
    mode: ModeOpt = Mode.dense, fusion: FusionOpt = Fusion.rrf, alpha: AlphaOpt = 0.5, rrf_k: RrfOpt = 60,
    model: ModelOpt = None,
) -> None:
    """nDCG@10, Recall@100 and MRR@10 over the judged queries: one JSON object on the last line."""
    from .errors import InvalidInputError
    from .search.evaluate import evaluate
    from .search.index import Index
    from .search.sources import read_qrels, read_queries

    ix = Index.open(index)
    texts, judged = read_queries(queries), read_qrels(qrels)
    missing = [q for q in judged if q not in texts]
    if missing:
        raise InvalidInputError(f"{len(missing)} judged queries are not in {queries} (e.g. {missing[0]!r})")
    qids = list(judged)
    vecs = [None] * len(qids)
    if mode != Mode.lexical:
        m = ix.model(_load(model) if model else None)
        vecs = list(m.embed([texts[q] for q in qids], pooling=ix.manifest["model"]["pooling"], normalize=True))
    results = {q: [h["id"] for h in ix.search(texts[q], vector=v, mode=mode.value, k=100, fusion=fusion.value,
                                              alpha=alpha, rrf_k=rrf_k)] for q, v in zip(qids, vecs, strict=True)}
    typer.echo(f"evaluated {len(qids)} queries, mode {mode.value}", err=True)
    _echo({"mode": mode.value, **evaluate(results, judged)})


# -- batch ----------------------------------------------------------------------------------------------------------
@batch_app.command("embed")
def batch_embed(
    input: Annotated[Path, typer.Option("--input", help="CSV, TSV, JSONL or Parquet")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet output (a directory with --engine spark)")],
    text_column: TextCol = "text", fmt: FormatOpt = None,
    engine: Annotated[Engine, typer.Option(help="local (streamed, bounded memory) or spark (mapInPandas)")]
    = Engine.local,
    model: Annotated[str | None, typer.Option("--model", "-m", help="checkpoint directory or hub id",
                                              show_default="all-MiniLM-L6-v2")] = None,
    truncate: Annotated[bool, typer.Option(help="embed only the first window of long texts")] = False,
    master: Annotated[str | None, typer.Option(help="Spark master", show_default="spark-submit's, else local[*]")]
    = None,
    progress: ProgressOpt = None,
) -> None:
    """Embed a table into Parquet: the input columns + embedding, model, model_version."""
    if engine == Engine.spark:
        from .search.spark import embed_spark

        _echo(embed_spark(str(input), str(output), text_column=text_column, model_source=model, fmt=fmt,
                          truncate=truncate, master=master))
        return
    from .search.batch import embed_local

    _echo(embed_local(_load(model), input, output, text_column=text_column, fmt=fmt, truncate=truncate,
                      progress=progress))
