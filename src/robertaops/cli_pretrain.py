"""CLI for MLM pretraining: `robertaops pretrain DATA -o OUT` and `robertaops tokenizer train DATA -o OUT`.

`register(app)` adds both to the main app (cli.py). As in cli.py, torch and the training code are imported inside
the commands, user errors are RobertaOpsErrors that the main app prints as one `error: ...` line (exit 2), a rich
progress bar goes to stderr, and the last line of stdout is one JSON object with the final metrics.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class Preset(StrEnum):
    tiny = "tiny"
    mini = "mini"
    small = "small"
    base = "base"


class Packing(StrEnum):
    dense = "dense"
    sentences = "sentences"


def data_root() -> Path:
    return Path(os.environ.get("ROBERTAOPS_DATA", "../shared/data"))


def pretrain(
    data: Annotated[str, typer.Argument(help="text file or directory (.txt, .gz, .jsonl with a 'text' field)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="run directory: checkpoints, log.jsonl, model")],
    tokenizer: Annotated[str | None, typer.Option(help="tokenizer directory", show_default=(
        "the --model checkpoint's, else $ROBERTAOPS_DATA/roberta-tokenizer (roberta-base's vocabulary)"))] = None,
    preset: Annotated[Preset, typer.Option(help="architecture when training from scratch")] = Preset.small,
    config: Annotated[str | None, typer.Option(help="HF config.json for the architecture (overrides --preset)")] = None,
    model: Annotated[str | None, typer.Option(help="checkpoint to continue pretraining (domain adaptation)")] = None,
    max_length: Annotated[int, typer.Option(min=8, help="tokens per block, <s> and </s> included")] = 128,
    packing: Annotated[Packing, typer.Option(help="dense: full blocks; sentences: whole sentences, padded")] = (
        Packing.dense),
    batch_size: Annotated[int, typer.Option(min=1, help="blocks per micro-batch")] = 32,
    grad_accum: Annotated[int, typer.Option(min=1, help="micro-batches per optimiser step")] = 1,
    max_steps: Annotated[int | None, typer.Option(min=1, help="optimiser steps", show_default="--epochs")] = None,
    epochs: Annotated[float, typer.Option(min=0.0, help="passes over the training blocks (without --max-steps)")] = 1.0,
    schedule_steps: Annotated[int | None, typer.Option(
        min=1, help="LR schedule length, to run only the start of a longer schedule", show_default="max steps")] = None,
    lr: Annotated[float, typer.Option(min=0.0, help="peak learning rate")] = 5e-4,
    warmup: Annotated[float, typer.Option(min=0.0, max=1.0, help="warm-up fraction of the schedule")] = 0.1,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.01,
    max_grad_norm: Annotated[float, typer.Option(min=0.0, help="gradient clipping; 0 = off")] = 1.0,
    mlm_probability: Annotated[float, typer.Option(min=0.01, max=0.99)] = 0.15,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N")] = "auto",
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast",
                                              show_default="on for CUDA with bf16, off on CPU")] = None,
    log_every: Annotated[int, typer.Option(min=1, help="steps between log.jsonl records")] = 10,
    eval_every: Annotated[int, typer.Option(min=0, help="steps between held-out evaluations; 0 = at the end")] = 0,
    eval_batch_size: Annotated[int, typer.Option(min=1)] = 64,
    max_eval_blocks: Annotated[int | None, typer.Option(min=1, help="cap on held-out blocks evaluated")] = None,
    save_every: Annotated[int, typer.Option(min=0, help="steps between checkpoints; 0 = final model only")] = 500,
    save_total_limit: Annotated[int, typer.Option(help="checkpoints kept; 0 = all")] = 2,
    cache_dir: Annotated[str | None, typer.Option(help="tokenized-block cache", show_default="OUTPUT/cache")] = None,
    resume: Annotated[bool, typer.Option(help="continue exactly from the newest checkpoint in OUTPUT")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Pretrain (or continue pretraining) a RoBERTa encoder with masked language modelling: dynamic masking, no
    NSP, AdamW with warm-up and linear decay, exact resume. Prints the final metrics as JSON on the last line."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from .training.pretrain import PretrainArgs
    from .training.pretrain import pretrain as run

    args = PretrainArgs(
        data=data, output=str(output), tokenizer=tokenizer, preset=preset.value, config=config, model=model,
        max_length=max_length, packing=packing.value, batch_size=batch_size, grad_accum=grad_accum,
        max_steps=max_steps, epochs=epochs, schedule_steps=schedule_steps, lr=lr, warmup=warmup,
        weight_decay=weight_decay, max_grad_norm=max_grad_norm, mlm_probability=mlm_probability, seed=seed,
        device=device, bf16=bf16, log_every=log_every, eval_every=eval_every, eval_batch_size=eval_batch_size,
        max_eval_blocks=max_eval_blocks, save_every=save_every, save_total_limit=save_total_limit,
        cache_dir=cache_dir, resume=resume, threads=threads)
    class Info(ProgressColumn):  # the latest loss / lr / throughput, on whichever task is running
        def render(self, task):
            return Text(task.fields.get("info", ""))

    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), Info(), console=console, disable=quiet)

    def on_log(record: dict) -> None:
        if "loss" in record:
            info = f"loss {record['loss']:.3f}  lr {record['lr']:.2e}  {record['tokens_per_s']:,.0f} tok/s"
            for task in progress.tasks:
                progress.update(task.id, info=info)
        elif "eval_loss" in record and not quiet:
            console.print(f"step {record['step']}: held-out loss {record['eval_loss']:.4f}, "
                          f"accuracy {record['eval_accuracy']:.4f}")

    with progress:
        metrics = run(args, data_root(), on_log=on_log, progress=progress)
    typer.echo(json.dumps(metrics))


tokenizer_app = typer.Typer(no_args_is_help=True, help="Train byte-level BPE tokenizers.")


@tokenizer_app.command("train")
def tokenizer_train(
    data: Annotated[str, typer.Argument(help="text file or directory (.txt, .gz, .jsonl)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="directory for tokenizer.json, vocab.json, ...")],
    vocab_size: Annotated[int, typer.Option(min=261, help="vocabulary size, specials and 256 bytes included")] = 50265,
    min_frequency: Annotated[int, typer.Option(min=1, help="merges seen fewer times are not learned")] = 2,
    max_paragraphs: Annotated[int | None, typer.Option(min=1, help="train on the first N paragraphs only")] = None,
) -> None:
    """Train a byte-level BPE tokenizer with RoBERTa's special tokens (<s> <pad> </s> <unk> <mask>)."""
    from .training.tokenizer_train import train_tokenizer

    typer.echo(json.dumps(train_tokenizer(data, output, vocab_size, min_frequency, max_paragraphs)))


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
    app.add_typer(tokenizer_app, name="tokenizer")
