"""The optimiser recipe shared by pretraining and fine-tuning: AdamW with decoupled weight decay on the matrices
only, and a linear warm-up then linear decay learning-rate schedule.

The split follows the reference recipe (BERT/RoBERTa, HF `Trainer`): weight decay pulls weights towards zero,
which is a regulariser for projection matrices but only harms biases, LayerNorm gains (decaying them towards 0
shrinks the normalised activations) and embedding tables (rare tokens' rows would decay between their updates).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: {"params": decayed, "weight_decay": wd} and {"params": the rest, "weight_decay": 0}.

    Not decayed: every parameter of an Embedding or LayerNorm module, every bias, and any other 1-D parameter
    (e.g. the MLM head's output bias, a bare nn.Parameter). Tied parameters (the MLM decoder shares the word
    embeddings) appear once, in the group of their first owner. Frozen parameters are left out.
    """
    no_decay: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if isinstance(module, NO_DECAY_MODULES) or name == "bias" or p.ndim < 2:
                no_decay.add(id(p))
    decay, rest, seen = [], [], set()
    for p in model.parameters():  # model.parameters() already yields a tied tensor once
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (rest if id(p) in no_decay else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float = 0.01, betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6, fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW with RoBERTa's defaults (β2 = 0.98 and eps 1e-6 keep large-batch pretraining stable).

    `fused=True` (CUDA parameters only) runs the whole update as one kernel per group."""
    if lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
    # foreach: one multi-tensor kernel per group instead of one per tensor (same results); fused: one kernel.
    kernel = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, **kernel)


def linear_schedule(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """LR factor rising linearly from 0 to 1 over `warmup_steps`, then falling linearly to 0 at `total_steps`.

    Same formula as transformers' get_linear_schedule_with_warmup: factor(s) = s / warmup for s < warmup, else
    (total - s) / (total - warmup), floored at 0. Call `.step()` after each optimiser step; the lr of update k
    (0-based) is then peak * factor(k), so with warm-up the very first update has lr 0, as in HF.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be within [0, {total_steps}], got {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)
