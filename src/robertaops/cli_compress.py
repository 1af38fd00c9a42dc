"""`robertaops quantize`: an int8 checkpoint and, given a labelled dev set, the accuracy it costs.

`register(app)` adds the command to the main app; the result is ONE JSON object on the last line of stdout.
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
