"""CLI for drift: `robertaops drift fit` (reference statistics to .npz) and `robertaops drift report`.

`register(app)` adds the group to the main app (cli.py). The report prints a few readable lines, then the verdict and
figures as ONE JSON object on the last line of stdout (what scripts parse), and optionally a self-contained HTML
report. The engine and matplotlib are imported inside the commands; user errors print one `error: ...` line, exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

drift_app = typer.Typer(no_args_is_help=True, help="Data drift: reference statistics and reports.")

ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="checkpoint directory, hub id or models:/ URI",
                                              show_default="the reference's model, else all-MiniLM-L6-v2")]
ColumnOpt = Annotated[str | None, typer.Option(help="text column of CSV/TSV/JSONL files",
                                               show_default="text, sentence, ...")]
RowsOpt = Annotated[int, typer.Option(min=10, help="rows sampled from each file (reproducibly, --seed)")]
SeedOpt = Annotated[int, typer.Option(help="sampling and permutation seed")]
FILE_HELP = ".txt (one per line, or CoNLL), .csv/.tsv or .jsonl"


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")


def _model(spec: str | None):
    from .api import load

    if spec and spec.startswith("models:/"):  # a registry version: the model production actually serves
        from .registry import Registry

        spec = str(Registry().resolve(spec)[0])
    return load(spec)


@drift_app.command("fit")
def fit_cmd(
    data: Annotated[Path, typer.Option("--data", "-d", help=f"reference texts: {FILE_HELP}")],
    output: Annotated[Path, typer.Option("--output", "-o", help="reference statistics (.npz)")],
    model: ModelOpt = None, text_column: ColumnOpt = None, max_rows: RowsOpt = 1000, seed: SeedOpt = 0,
) -> None:
    """Reference statistics: embedding sample, centroid and top principal components, lengths, predicted labels."""
    from .monitoring.drift import fit, read_texts

    texts = read_texts(data, text_column, limit=max_rows, seed=seed)
    ref = fit(texts, _model(model), source=str(data))
    ref.save(output)
    typer.echo(json.dumps({"output": str(output), "rows": len(texts), "model": ref.meta["model"],
                           "labels": ref.labels, "mean_length": round(float(ref.lengths.mean()), 2)}))


@drift_app.command("report")
def report_cmd(
    reference: Annotated[Path, typer.Option("--reference", "-r", help=f"a `drift fit` .npz, or texts: {FILE_HELP}")],
    current: Annotated[Path, typer.Option("--current", "-c", help=f"current texts: {FILE_HELP}")],
    model: ModelOpt = None, html: Annotated[Path | None, typer.Option(help="also write an HTML report")] = None,
    text_column: ColumnOpt = None, max_rows: RowsOpt = 1000, seed: SeedOpt = 0,
    permutations: Annotated[int, typer.Option(min=19, help="MMD permutations (p-value resolution)")] = 200,
) -> None:
    """Compare current texts with a reference: centroid distance, MMD + p-value, domain AUC, PSI; verdict JSON last."""
    from .monitoring.drift import Reference, compare, fit, read_texts

    if reference.suffix == ".npz":
        ref = Reference.load(reference)
        m = _model(model or ref.meta.get("model"))
    else:
        m = _model(model)
        ref = fit(read_texts(reference, text_column, limit=max_rows, seed=seed), m, source=str(reference))
    texts = read_texts(current, text_column, limit=max_rows, seed=seed + 1)
    result = compare(ref, texts, m, permutations=permutations, seed=seed, keep_samples=html is not None)
    if html is not None:
        from .monitoring.report import write_html

        write_html(html, ref, result, title=f"Drift: {current.name} vs {reference.name}")
    result.pop("_samples", None)
    result.update(reference=str(reference), current=str(current), html=str(html) if html else None)
    typer.echo(f"verdict: {result['verdict']} ({', '.join(result['signals']) or 'no signal'})")
    typer.echo(f"centroid cosine distance {result['centroid_cosine_distance']:.4f}, MMD² {result['mmd2']:.5f} "
               f"(p={result['mmd_p_value']:.3g}), domain AUC {result['domain_auc']:.3f}, "
               f"PSI lengths {result['psi_lengths']:.3f}, PSI labels {result['psi_labels']}")
    typer.echo(json.dumps(result))
