"""`robertaops finetune {classify,ner,pair,regression,embedding}`: data in, an HF-layout checkpoint and metrics out.

One function, `finetune(args)`, reads the data, puts a fresh head on the base checkpoint, trains with early
stopping on the dev metric (the best weights are what is saved), fits temperature scaling for classifiers, and
writes next to the weights: training_curve.png, metrics.json and a model-card draft (README.md). Params, per-step
metrics and those files go to MLflow. It returns the final metrics as one dict (the CLI prints it as JSON).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, InvalidInputError, choices
from ..model.checkpoint import read_sentence_transformers
from ..resolve import resolve
from . import tasks as T
from .calibration import fit_temperature
from .data import check_labels, label_list, read_conll, read_table
from .loop import History, TrainConfig, train
from .model_io import init_model, load_tokenizer, max_length_of, save_checkpoint
from .tracking import Tracker, default_uri, plot_curve

TASKS = ("classify", "ner", "pair", "regression", "embedding")
NER_STRATEGIES = ("first", "all")


@dataclass
class FinetuneArgs:
    task: str
    train: Path
    output: Path
    dev: Path | None = None
    model: str | None = None
    text_column: str = "text"
    pair_column: str | None = None
    label_column: str | None = "label"
    fmt: str | None = None
    header: bool | None = None
    multi_label: bool = False
    label_separator: str = ","
    ner_labels: str = "first"
    pack: bool = True  # NER: random batches, their sentences packed into full rows (no padding) instead of bucketed
    max_length: int | None = None
    pooling: str | None = None
    scale: float = 20.0
    min_score: float | None = None
    max_train: int | None = None
    skip_bad_rows: bool = False
    calibrate: bool = True
    tracking_uri: str | None = None  # None: sqlite file beside the output; "none": no tracking
    experiment: str = "robertaops-finetune"
    progress: bool = True
    threads: int | None = None  # torch CPU threads; None = torch's default
    train_cfg: TrainConfig = field(default_factory=TrainConfig)


def _read(args: FinetuneArgs, path: Path, for_dev: bool):
    if args.task == "ner":
        return read_conll(path, skip_bad_rows=args.skip_bad_rows)
    if args.task in ("pair", "embedding") and not args.pair_column:
        raise InvalidInputError(f"finetune {args.task} needs --text-pair-column (the second text of each pair)")
    kind = {"regression": "score", "embedding": "score"}.get(args.task, "multi" if args.multi_label else "class")
    label = args.label_column
    if args.task == "embedding" and not for_dev and args.min_score is None:
        kind, label = "none", None  # training pairs are positives as they are; scores only filter (--min-score)
    if kind != "none" and not label:
        raise InvalidInputError(f"finetune {args.task} needs --label-column")
    return read_table(path, text_column=args.text_column, pair_column=args.pair_column, label_column=label,
                      fmt=args.fmt, header=args.header, label_kind=kind, label_separator=args.label_separator,
                      skip_bad_rows=args.skip_bad_rows)


def subset(rows: list, n: int | None, seed: int) -> list:
    """--max-train: n rows drawn by the seed, kept in file order (benchmarks/finetune_hf.py draws the same)."""
    if not n or n >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n])
    return [rows[i] for i in keep]


def _split_dev(rows: list, seed: int) -> tuple[list, list]:
    """No --dev: hold out 10% of the training rows (at least one), chosen by the seed."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_dev = max(1, len(rows) // 10)
    if len(rows) < 2:
        raise DataError("need at least 2 training rows to hold out a dev set; pass --dev")
    return [rows[i] for i in order[n_dev:]], [rows[i] for i in order[:n_dev]]


def finetune(args: FinetuneArgs) -> dict:
    if args.task not in TASKS:
        raise InvalidInputError(f"unknown task {args.task!r}; choose {choices(TASKS)}")
    if args.ner_labels not in NER_STRATEGIES:
        raise InvalidInputError(f"unknown --ner-labels {args.ner_labels!r}; choose {choices(NER_STRATEGIES)}")
    cfg_t = args.train_cfg
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    source = resolve(args.model)

    train_set = _read(args, Path(args.train), for_dev=False)
    rows = train_set.rows
    if args.task == "embedding" and args.min_score is not None:
        rows = [r for r in rows if r.label >= args.min_score]
    rows = subset(rows, args.max_train, cfg_t.seed)
    dev_set = _read(args, Path(args.dev), for_dev=True) if args.dev else None
    if dev_set is None:
        rows, dev_rows = _split_dev(rows, cfg_t.seed)
        dev_path = Path(args.train)
    else:
        dev_rows, dev_path = dev_set.rows, Path(args.dev)  # type: ignore[arg-type]
    if not rows:
        raise DataError(f"{args.train}: no training rows left")

    # Labels: from training and dev rows together, so a class seen only in dev still gets a head output.
    problem = None
    id2label: tuple[str, ...] = ()
    if args.task == "ner":
        id2label = tuple(label_list([t for s in rows + dev_rows for t in s.tags], "tags"))
    elif args.task == "regression":
        id2label, problem = ("LABEL_0",), "regression"
    elif args.task != "embedding":
        id2label = tuple(label_list([r.label for r in rows + dev_rows], "class"))
        problem = "multi_label_classification" if args.multi_label else "single_label_classification"
        if len(id2label) < 2 and not args.multi_label:
            raise DataError(f"{args.train}: only one class ({id2label[0]!r}); classification needs at least two")
    label2id = {label: i for i, label in enumerate(id2label)}
    if args.task not in ("regression", "embedding"):
        check_labels(dev_rows, label2id, dev_path)

    model = init_model(source, T.HEAD_TASK[args.task], id2label, problem, seed=cfg_t.seed)
    tokenizer = load_tokenizer(source, model.cfg)
    max_length = max_length_of(source, model.cfg, args.max_length)
    pooling = args.pooling or read_sentence_transformers(source).pooling or "mean"
    if args.task == "ner":
        train_data = T.encode_sentences(tokenizer, rows, max_length, label2id, args.ner_labels)
        dev_data = T.encode_sentences(tokenizer, dev_rows, max_length, label2id, "first")
    elif args.task == "embedding":
        train_data = T.encode_embedding(tokenizer, rows, max_length)
        dev_data = T.encode_embedding(tokenizer, dev_rows, max_length)
    else:
        kind = "score" if problem == "regression" else "multi" if args.multi_label else "class"
        train_data = T.encode_rows(tokenizer, rows, max_length, kind, label2id)
        dev_data = T.encode_rows(tokenizer, dev_rows, max_length, kind, label2id)
    metric_task = "multi_label" if args.multi_label else args.task
    primary = T.PRIMARY[metric_task]

    def evaluate() -> dict[str, float]:
        outputs = T.predict(model, dev_data, args.task, pooling, bf16=cfg_t.bf16)
        return T.score(args.task, problem or "", dev_data, outputs, id2label)

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(default_uri(output) if args.tracking_uri is None else args.tracking_uri, args.experiment,
                      run_name=f"{args.task}-{output.name}", artifacts_dir=output.resolve().parent / "mlartifacts")
    status = "FAILED"
    try:
        params = {k: v for k, v in asdict(args).items() if k not in ("train_cfg", "progress", "threads")}
        tracker.params({**params, **asdict(cfg_t), "base": str(source), "max_length_used": max_length,
                        "train_rows": len(rows), "dev_rows": len(dev_rows), "labels": ",".join(id2label)})
        before = evaluate() if args.task == "embedding" else None
        hist = _train(model, train_data, cfg_t, args, problem, pooling, evaluate, primary, source, output, tracker)
        result = _finish(args, model, hist, dev_data, problem, pooling, id2label, source, output, primary, cfg_t)
        if before is not None:
            result["before"] = before
        result.update(train_rows=len(rows), dev_rows=len(dev_rows), skipped_rows=train_set.skipped +
                      (dev_set.skipped if dev_set else 0), run_id=tracker.run_id)
        # metrics.json again, now with the counts and the MLflow run id (so the registry can find the run)
        (output / "metrics.json").write_text(json.dumps({**result, "evals": hist.evals}, indent=2) + "\n")
        tracker.metrics({f"final_{k}": v for k, v in result["metrics"].items()}, hist.best_step)
        for name in ("training_curve.png", "metrics.json", "README.md"):
            tracker.artifact(output / name)
        status = "FINISHED"
        return result
    finally:
        tracker.end(status)


def _train(model, train_data, cfg_t, args, problem, pooling, evaluate, primary, source, output, tracker) -> History:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    token_norm = T.labelled_per_batch(train_data, cfg_t.batch_size) if args.task == "ner" else None

    packed = args.task == "ner" and args.pack
    if packed:  # packing removes the padding, so batches can stay as random as the reference's
        cfg_t = replace(cfg_t, bucket=False)

    def loss_fn(index):
        return T.loss(model, train_data, index, args.task, problem or "", pooling, args.scale, token_norm, packed)

    def on_best(_metrics):  # the best checkpoint is on disk as soon as it exists (a killed run keeps it)
        save_checkpoint(model, source, output)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[speed]:.1f} ex/s"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not args.progress) as progress:
        return train(model, train_data.lengths(), cfg_t, loss_fn=loss_fn, evaluate=evaluate, primary=primary,
                     on_best=on_best, log=tracker.metrics, progress=progress)


def _finish(args, model, hist: History, dev_data, problem, pooling, id2label, source: Path, output: Path,
            primary: str, cfg_t: TrainConfig) -> dict:
    """Calibrate (classifiers), save the best weights, write curve / metrics / card; the result dict."""
    metrics = dict(hist.best)
    temperature = None
    if args.calibrate and args.task in ("classify", "pair"):
        logits = np.stack(T.predict(model, dev_data, args.task, pooling, bf16=False))
        temperature = fit_temperature(logits, np.asarray(dev_data.targets), multi_label=args.multi_label)
        if not args.multi_label:
            from .metrics import ece, softmax

            y = np.asarray(dev_data.targets)
            metrics["ece_before"] = ece(softmax(logits), y)
            metrics["ece"] = ece(softmax(logits, temperature), y)
        metrics["temperature"] = temperature
    save_checkpoint(model, source, output, temperature=temperature)
    plot_curve(hist, primary, output / "training_curve.png")
    result = {
        "task": args.task, "output": str(output), "base": str(source), "primary": primary, "metrics": metrics,
        "best_step": hist.best_step, "steps": hist.steps[-1] if hist.steps else 0,
        "stopped_early": hist.stopped_early, "train_seconds": round(hist.train_seconds, 3),
        "train_examples_per_second": round(hist.examples_per_second, 2),
        "train_examples_per_cpu_second": round(hist.examples / hist.cpu_seconds, 2) if hist.cpu_seconds else 0.0,
    }
    (output / "metrics.json").write_text(json.dumps({**result, "evals": hist.evals}, indent=2) + "\n")
    (output / "README.md").write_text(_card(args, result, id2label, cfg_t))
    return result


def _card(args, result: dict, id2label, cfg_t: TrainConfig) -> str:
    """A model-card draft: what was trained, on what, how, and how well (to be completed by a person)."""
    lines = [
        f"# {Path(args.output).name}", "",
        f"Fine-tuned by `robertaops finetune {args.task}` from `{result['base']}`.", "",
        "## Data", f"- train: `{args.train}`", f"- dev: `{args.dev or '10% held out of train'}`",
        f"- labels: {', '.join(id2label) if id2label else 'n/a (embedding model)'}", "",
        "## Training", *[f"- {k}: {v}" for k, v in asdict(cfg_t).items()], "",
        f"## Dev metrics (best step {result['best_step']})",
        *[f"- {k}: {v:.4f}" for k, v in result["metrics"].items()], "",
        "## Limitations", "- Draft: describe intended use, data biases and out-of-scope uses before publishing.", "",
    ]
    return "\n".join(lines)
