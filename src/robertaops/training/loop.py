"""The fine-tuning loop shared by every task: length-bucketed batches, AdamW + linear schedule, optional bf16
autocast, gradient clipping, periodic dev evaluation with early stopping, best weights kept.

Speed: rows are shuffled, then sorted by length inside chunks of 50 batches and cut into batches, and the batches
shuffled again. Each batch pads only to its own longest row, so almost nothing is computed on padding, while the
order stays random enough for SGD (the trick behind HF's `group_by_length`, on by default here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.heads import TransformerModel
from .optim import linear_schedule, param_groups

MEGA_BATCH = 8  # batches sorted together: larger = less padding, less randomness (see RESULTS.md, CoNLL)


@dataclass
class TrainConfig:
    epochs: float = 3.0
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)  # transformers' Trainer defaults (fine-tuning, not pretraining)
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    seed: int = 42
    bf16: bool = False
    patience: int = 3  # evaluations without improvement before stopping; 0 = never stop early
    eval_every: int = 0  # steps between dev evaluations; 0 = once per epoch
    log_every: int = 10
    bucket: bool = True  # length-bucketed batches; False = random batches (each padded to its own longest row)


@dataclass
class History:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    best_step: int = 0
    best: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    examples: int = 0
    train_seconds: float = 0.0
    cpu_seconds: float = 0.0  # process CPU time of the steps (all threads): steadier than wall time on a shared box
    stopped_early: bool = False

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds else 0.0


def bucketed_batches(lengths: list[int], batch_size: int, rng: np.random.Generator,
                     mega_batch: int = MEGA_BATCH) -> list[list[int]]:
    order = rng.permutation(len(lengths))
    chunk = batch_size * mega_batch
    out: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start: start + chunk].tolist(), key=lambda i: lengths[i])
        out += [part[k: k + batch_size] for k in range(0, len(part), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def train(model: TransformerModel, lengths: list[int], cfg: TrainConfig, *,
          loss_fn: Callable[[list[int]], torch.Tensor], evaluate: Callable[[], dict[str, float]], primary: str,
          on_best: Callable[[dict[str, float]], None] | None = None,
          log: Callable[[dict[str, float], int], None] | None = None, progress=None) -> History:
    """Train `model` in place; returns the history with the best dev metrics and their weights (best_state).

    loss_fn(row indices) -> scalar loss; evaluate() -> dev metrics (higher `primary` is better)."""
    torch.manual_seed(cfg.seed)  # dropout masks
    rng = np.random.default_rng(cfg.seed)  # batch order
    steps_per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    total = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    # optim.py's groups and schedule, but the fused AdamW kernel (what transformers' Trainer uses by default with
    # torch >= 2.8): one pass over memory per step; the foreach version measured 4x slower here, and with a
    # 30k-row embedding table updated every step, the optimiser was most of a small model's step time.
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            fused=True)
    sched = linear_schedule(opt, int(cfg.warmup_ratio * total), total)
    eval_every = cfg.eval_every or steps_per_epoch
    hist = History()
    bad, step, running, seen = 0, 0, 0.0, 0
    model.train()
    task = progress.add_task("train", total=total, loss=float("nan"), speed=0.0) if progress else None

    def checkpoint() -> bool:
        """Evaluate; keep the weights if they beat the best so far. True = stop (patience spent)."""
        nonlocal bad
        metrics = evaluate()
        hist.evals.append((step, metrics))
        if log:
            log({f"dev_{k}": v for k, v in metrics.items()}, step)
        if not hist.best or metrics[primary] > hist.best[primary]:
            hist.best, hist.best_step, bad = metrics, step, 0
            hist.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if on_best:
                on_best(metrics)
        else:
            bad += 1
        return cfg.patience > 0 and bad >= cfg.patience

    while step < total:
        for batch in bucketed_batches(lengths, cfg.batch_size, rng, MEGA_BATCH if cfg.bucket else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = loss_fn(batch)
            loss.backward()
            if cfg.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            hist.train_seconds += time.perf_counter() - t0
            hist.cpu_seconds += time.process_time() - c0
            hist.examples += len(batch)
            value = loss.item()
            running, seen = running + value, seen + 1
            if step % cfg.log_every == 0 or step == total:
                hist.steps.append(step)
                hist.losses.append(running / seen)
                if log:
                    log({"train_loss": running / seen, "lr": sched.get_last_lr()[0]}, step)
                running, seen = 0.0, 0
            if progress is not None:
                progress.update(task, advance=1, loss=value, speed=hist.examples_per_second)
            if step % eval_every == 0 or step == total:
                if checkpoint():
                    hist.stopped_early = True
                    return _done(model, hist)
            if step >= total:
                break
    return _done(model, hist)


def _done(model: TransformerModel, hist: History) -> History:
    if hist.best_state is not None:
        model.load_state_dict(hist.best_state)
    model.eval()
    return hist
