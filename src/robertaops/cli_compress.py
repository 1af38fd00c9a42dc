"""`robertaops quantize` and `robertaops distill`: smaller, faster models, with the accuracy they cost measured.

`register(app)` adds the commands to the main app; each prints ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("quantize")
    def quantize(
        output: Annotated[Path, typer.Option("--output", "-o", help="directory for the int8 checkpoint")],
        model: Annotated[str | None, typer.Option("--model", "-m", help="checkpoint directory or hub id",
                                                  show_default="all-MiniLM-L6-v2")] = None,
        task: Annotated[str | None, typer.Option(help="evaluate before/after: classify, pair, regression, ner or "
                                                      "embedding")] = None,
        data: Annotated[Path | None, typer.Option(help="labelled dev file for the before/after evaluation")] = None,
        text_column: Annotated[str, typer.Option(help="text column: name or 0-based index")] = "text",
        text_pair_column: Annotated[str | None, typer.Option(help="second text of a pair")] = None,
        label_column: Annotated[str, typer.Option(help="label column: name or 0-based index")] = "label",
    ) -> None:
        """Write an int8 (W8A8, per-token activations) copy of a model; with --task and --data, report the
        metrics of both and their difference."""
        from .errors import InvalidInputError
        from .training.compress import quantize_checkpoint

        if (task is None) != (data is None):
            raise InvalidInputError("--task and --data go together (the before/after evaluation needs both)")
        options = dict(text_column=text_column, pair_column=text_pair_column, label_column=label_column)
        result = quantize_checkpoint(model, output, task=task, data=data, **(options if task else {}))
        typer.echo(json.dumps(result, ensure_ascii=False, default=float))

    @app.command("distill")
    def distill(
        train: Annotated[Path, typer.Option(help="labelled training file (CSV / TSV / JSONL)")],
        output: Annotated[Path, typer.Option("--output", "-o", help="directory for the student checkpoint")],
        teacher: Annotated[str | None, typer.Option(help="fine-tuned single-label classifier to distill")] = None,
        dev: Annotated[Path | None, typer.Option(help="labelled dev file (default: 10% of the training rows)")] = None,
        text_column: Annotated[str, typer.Option(help="text column: name or 0-based index")] = "text",
        text_pair_column: Annotated[str | None, typer.Option(help="second text of a pair")] = None,
        label_column: Annotated[str, typer.Option(help="label column: name or 0-based index")] = "label",
        layers: Annotated[int, typer.Option(min=1, help="Transformer blocks the student keeps")] = 3,
        temperature: Annotated[float, typer.Option(min=0.1, help="softmax temperature of the soft labels")] = 2.0,
        alpha: Annotated[float, typer.Option(min=0.0, max=1.0, help="weight of the soft-label loss vs gold")] = 0.5,
        beta: Annotated[float, typer.Option(min=0.0, help="weight of the hidden-state loss")] = 1.0,
        epochs: Annotated[float, typer.Option(min=0.01)] = 3.0,
        batch_size: Annotated[int, typer.Option(min=1)] = 32,
        lr: Annotated[float, typer.Option(min=0.0)] = 5e-5,
        seed: int = 42,
        max_train: Annotated[int | None, typer.Option(min=1, help="train on a seeded subset of N rows")] = None,
    ) -> None:
        """Train a shallower student (the teacher's blocks spread evenly, same width) on the teacher's soft labels
        and hidden states; reports teacher and student dev metrics and their difference."""
        from .training.distill import DistillArgs
        from .training.distill import distill as run
        from .training.loop import TrainConfig

        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        result = run(DistillArgs(train=train, output=output, teacher=teacher, dev=dev, text_column=text_column,
                                 pair_column=text_pair_column, label_column=label_column, layers=layers,
                                 temperature=temperature, alpha=alpha, beta=beta, max_train=max_train, train_cfg=cfg))
        typer.echo(json.dumps(result, ensure_ascii=False, default=float))
