"""`robertaops finetune {classify,ner,pair,regression,embedding}` and `robertaops evaluate`.

`register(app)` adds them to the main app. Each command prints its final metrics as ONE JSON object on the last
line of stdout (progress goes to stderr), so scripts read `tail -n1`. torch and the training code are imported
inside the commands; errors surface through the main app's handler (one `error:` line, exit 2).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

TRACKING_HELP = "MLflow tracking URI; 'none' disables tracking"


class Format(StrEnum):
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    conll = "conll"


class NerLabels(StrEnum):
    first = "first"
    all = "all"


class EvalTask(StrEnum):
    classify = "classify"
    pair = "pair"
    regression = "regression"
    ner = "ner"
    embedding = "embedding"


ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="base checkpoint directory or hub id",
                                              show_default="all-MiniLM-L6-v2, packaged offline")]
TrainOpt = Annotated[Path, typer.Option(help="training data file")]
DevOpt = Annotated[Path | None, typer.Option(help="dev data file (early stopping, calibration)",
                                             show_default="10% of --train held out")]
OutputOpt = Annotated[Path, typer.Option("--output", "-o", help="checkpoint directory to write")]
FormatOpt = Annotated[Format | None, typer.Option("--format", help="data format", show_default="from the suffix")]
HeaderOpt = Annotated[bool | None, typer.Option("--header/--no-header", help="first row is a header",
                                                show_default="detected")]
SkipOpt = Annotated[bool, typer.Option(help="skip (and count) rows that cannot be parsed instead of failing")]
LabelOpt = Annotated[str, typer.Option(help="label column: name or 0-based index")]


def _emit(result: dict) -> None:
    """The final metrics: one JSON line, last on stdout."""
    typer.echo(json.dumps(result, ensure_ascii=False, default=float))


def _train_cfg(epochs, batch_size, lr, weight_decay, warmup_ratio, seed, bf16, patience, eval_every, bucket):
    from .training.loop import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       warmup_ratio=warmup_ratio, seed=seed, bf16=bf16, patience=patience, eval_every=eval_every,
                       bucket=bucket)


def _command(task: str, text_default: str, pair_default: str | None, label_default: str | None, doc: str):
    """Build one `finetune <task>` command; the tasks share every option, defaults differ."""

    def command(
        train: TrainOpt, output: OutputOpt, dev: DevOpt = None, model: ModelOpt = None,
        text_column: Annotated[str, typer.Option(help="text column: name or 0-based index")] = text_default,
        text_pair_column: Annotated[str | None, typer.Option(help="second text of a pair: name or index")]
        = pair_default,
        label_column: Annotated[str | None, typer.Option(help="label column: name or 0-based index")]
        = label_default,
        fmt: FormatOpt = None, header: HeaderOpt = None,
        multi_label: Annotated[bool, typer.Option(help="several labels per row (problem_type multi-label)")] = False,
        label_separator: Annotated[str, typer.Option(help="separator of multi-label labels in a cell")] = ",",
        ner_labels: Annotated[NerLabels, typer.Option(help="NER: label the first sub-word or all sub-words")]
        = NerLabels.first,
        epochs: Annotated[float, typer.Option(min=0.01)] = 3.0,
        batch_size: Annotated[int, typer.Option(min=1)] = 32,
        lr: Annotated[float, typer.Option(min=0.0)] = 5e-5,
        weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.0,
        warmup_ratio: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.0,
        max_length: Annotated[int | None, typer.Option(min=4, help="tokens per row (longer rows are truncated)",
                                                       show_default="the model's limit")] = None,
        bf16: Annotated[bool, typer.Option(help="bfloat16 autocast (faster on CPUs with AVX-512 BF16)")] = False,
        bucket: Annotated[bool, typer.Option(help="length-bucketed batches (faster); --no-bucket: random batches "
                                             "(NER learned faster with them in short runs)")] = True,
        pack: Annotated[bool, typer.Option(help="NER: random batches whose sentences are packed into full rows "
                                           "(block-diagonal attention) instead of padded; --no-pack: --bucket "
                                           "decides")] = True,
        patience: Annotated[int, typer.Option(min=0, help="evaluations without improvement before stopping; "
                                              "0 = never")] = 3,
        eval_every: Annotated[int, typer.Option(min=0, help="steps between dev evaluations; 0 = each epoch")] = 0,
        seed: int = 42,
        max_train: Annotated[int | None, typer.Option(min=1, help="train on a seeded random subset of N rows")]
        = None,
        pooling: Annotated[str | None, typer.Option(help="embedding: cls, mean or max",
                                                    show_default="the model's own")] = None,
        min_score: Annotated[float | None, typer.Option(help="embedding: keep train pairs whose label >= this")]
        = None,
        calibrate: Annotated[bool, typer.Option(help="fit temperature scaling on the dev set")] = True,
        skip_bad_rows: SkipOpt = False,
        tracking_uri: Annotated[str | None, typer.Option(help=TRACKING_HELP,
                                                         show_default="sqlite:///<output's parent>/mlruns.db")]
        = None,
        experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "robertaops-finetune",
        threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads")] = None,
    ) -> None:
        from .training.finetune import FinetuneArgs, finetune

        args = FinetuneArgs(
            task=task, train=train, output=output, dev=dev, model=model, text_column=text_column,
            pair_column=text_pair_column, label_column=label_column, fmt=fmt.value if fmt else None, header=header,
            multi_label=multi_label, label_separator=label_separator, ner_labels=ner_labels.value, pack=pack,
            max_length=max_length, pooling=pooling, min_score=min_score, max_train=max_train,
            skip_bad_rows=skip_bad_rows, calibrate=calibrate, tracking_uri=tracking_uri, experiment=experiment,
            threads=threads,
            train_cfg=_train_cfg(epochs, batch_size, lr, weight_decay, warmup_ratio, seed, bf16, patience,
                                 eval_every, bucket),
        )
        _emit(finetune(args))

    command.__doc__ = doc
    return command


def register(app: typer.Typer) -> None:
    """Add `finetune` (a sub-app with one command per task) and `evaluate` to the main app."""
    finetune_app = typer.Typer(cls=app.info.cls, no_args_is_help=True,
                               help="Fine-tune a checkpoint; prints the final dev metrics as JSON.")
    app.add_typer(finetune_app, name="finetune")
    specs = [
        ("classify", "text", None, "label", "Sequence classification (single- or multi-label) of texts."),
        ("pair", "sentence1", "sentence2", "label", "Classification of text pairs (paraphrase, entailment)."),
        ("regression", "text", None, "label", "One real-valued output per text (or pair); MSE loss."),
        ("ner", "0", None, None, "Token classification on CoNLL files (token first, tag last column)."),
        ("embedding", "sentence1", "sentence2", "score",
         "Sentence embeddings: in-batch negatives ranking loss on pairs; dev = STS Spearman."),
    ]
    for task, text, pair, label, doc in specs:
        finetune_app.command(task)(_command(task, text, pair, label, doc))

    @app.command("evaluate")
    def evaluate_command(
        data: Annotated[Path, typer.Option(help="labelled data file")],
        task: Annotated[EvalTask, typer.Option(help="what the model does")],
        model: ModelOpt = None,
        text_column: Annotated[str, typer.Option(help="text column: name or 0-based index")] = "text",
        text_pair_column: Annotated[str | None, typer.Option(help="second text of a pair")] = None,
        label_column: LabelOpt = "label",
        fmt: FormatOpt = None, header: HeaderOpt = None,
        label_separator: Annotated[str, typer.Option(help="separator of multi-label labels in a cell")] = ",",
        skip_bad_rows: SkipOpt = False,
        max_length: Annotated[int | None, typer.Option(min=4, help="tokens per window")] = None,
        batch_tokens: Annotated[int | None, typer.Option(min=1, help="padded tokens per forward pass")] = None,
    ) -> None:
        """Metrics of a checkpoint on a labelled file (as served: through the pipelines); one JSON line."""
        from .training.evaluate import evaluate

        _emit(evaluate(model, task.value, data, text_column=text_column, pair_column=text_pair_column,
                       label_column=label_column, fmt=fmt.value if fmt else None, header=header,
                       label_separator=label_separator, skip_bad_rows=skip_bad_rows, max_length=max_length,
                       batch_tokens=batch_tokens))
