"""MLM pretraining loop (RoBERTa recipe): from scratch, from a config, or continued from a checkpoint.

One step = `grad_accum` micro-batches of `batch_size` packed blocks, each freshly masked (dynamic masking), the MLM
head run only at the masked positions (~15 % of tokens: the 50k-wide vocabulary projection is most of the head's
cost), AdamW (optim.py) with linear warm-up then decay, gradient clipping, optional bf16 autocast.

Everything a run's future depends on is in its checkpoints (train_state.py) and the data order is a function of the
step alone (a seeded permutation per epoch), so `resume=True` continues exactly where the newest checkpoint left off:
a run killed with SIGKILL and resumed logs the same losses as one never interrupted (bit for bit on the CPU; on a
GPU up to the nondeterminism of atomic-add kernels such as the embedding and index_select backward passes).

Outputs in `output/`: log.jsonl (train records every `log_every` steps, eval records), checkpoint-N/ directories,
and at the end the final model (HF layout + tokenizer files) and metrics.json.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, InvalidInputError, choices
from ..model.checkpoint import build_model, save_model
from ..model.config import EncoderConfig
from ..model.heads import TransformerModel
from ..tokenizer import Tokenizer
from . import train_state as ckpt
from .masking import IGNORE, Masker
from .mlm_data import PACKINGS, Specials, list_files, load_blocks, split_blocks
from .optim import linear_schedule, make_optimizer

PRESETS = {  # (layers, hidden, heads, FFN); "small" is the reference roberta-novels-small architecture
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (6, 384, 6, 1536),
    "base": (12, 768, 12, 3072),
}
# Arguments that shape the trajectory: a resume with any of them changed would not continue the same run.
TRAJECTORY = ("data", "preset", "config", "model", "max_length", "packing", "batch_size", "grad_accum", "max_steps",
              "schedule_steps", "lr", "warmup", "weight_decay", "max_grad_norm", "mlm_probability", "seed", "bf16")


@dataclass
class PretrainArgs:
    data: str
    output: str
    tokenizer: str | None = None  # default: the checkpoint's (continued pretraining) or roberta-base's vocabulary
    preset: str = "small"
    config: str | None = None  # an HF config.json; overrides the preset
    model: str | None = None  # continue pretraining this checkpoint
    max_length: int = 128
    packing: str = "dense"
    batch_size: int = 32  # sequences per micro-batch
    grad_accum: int = 1
    max_steps: int | None = None  # optimiser steps to run; default: `epochs` over the training blocks
    epochs: float = 1.0
    schedule_steps: int | None = None  # length of the LR schedule (default max_steps): run the start of a longer one
    lr: float = 5e-4
    warmup: float = 0.1  # fraction of the schedule spent warming up
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    mlm_probability: float = 0.15
    seed: int = 0
    device: str = "auto"
    bf16: bool | None = None  # None: on for CUDA with bf16 support, off on CPU
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate at the end only
    eval_batch_size: int = 64
    max_eval_blocks: int | None = None
    save_every: int = 500  # 0: final model only
    save_total_limit: int = 2
    cache_dir: str | None = None  # tokenized-block cache; default output/cache
    resume: bool = False
    eval_seed: int = 1234
    threads: int | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidInputError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {name!r} requested but CUDA is not available")
    return device


def init_weights(model: nn.Module, std: float = 0.02) -> None:
    """BERT/RoBERTa initialisation (what transformers does): N(0, 0.02) weights, zero biases, unit LayerNorms."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if isinstance(model, TransformerModel) and model.mlm is not None:
        nn.init.zeros_(model.mlm.bias)


def build_fresh(args: PretrainArgs, vocab_size: int, pad_id: int) -> TransformerModel:
    if args.config:
        cfg = EncoderConfig.from_file(args.config).with_(task="mlm")
        if cfg.vocab_size < vocab_size:
            raise InvalidInputError(f"config vocab_size {cfg.vocab_size} < the tokenizer's {vocab_size}")
    else:
        if args.preset not in PRESETS:
            raise InvalidInputError(f"unknown preset {args.preset!r}; choose {choices(PRESETS)}")
        layers, hidden, heads, ffn = PRESETS[args.preset]
        cfg = EncoderConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=514,
                            pad_token_id=pad_id, task="mlm",
                            hf={"bos_token_id": 0, "eos_token_id": 2, "initializer_range": 0.02})
    model = TransformerModel(cfg)
    init_weights(model)
    return model


def build_continued(path: Path) -> TransformerModel:
    """An MLM model from a checkpoint; a bare encoder (or another head) gets a freshly initialised MLM head."""
    cfg = EncoderConfig.from_file(path / "config.json").with_(task="mlm")
    try:
        return build_model(path, cfg)
    except CheckpointError:
        for task in ("base", "sequence_classification", "token_classification"):
            try:
                body = build_model(path, cfg.with_(task=task))
                break
            except CheckpointError:
                continue
        else:
            raise
        model = TransformerModel(cfg.with_(has_pooler=False))
        init_weights(model)
        model.encoder.load_state_dict(body.encoder.state_dict())
        return model


class Batches:
    """Sequence cursor -> blocks. The order is a seeded permutation per epoch, so it depends on the cursor only."""

    def __init__(self, blocks: np.ndarray, index: np.ndarray, seed: int):
        self.blocks, self.index, self.seed = blocks, index, seed
        self._epoch, self._perm = -1, index

    def take(self, cursor: int, n: int) -> np.ndarray:
        rows = []
        for pos in range(cursor, cursor + n):
            epoch, i = divmod(pos, len(self.index))
            if epoch != self._epoch:
                self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.index)
            rows.append(self._perm[i])
        return np.asarray(self.blocks[rows], dtype=np.int64)  # (n, L)


def select_masked(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) CPU labels -> (flat positions of the masked tokens (M,), their targets (M,)). Done on the CPU, where
    the masks are drawn, so the device never has to report how many tokens were masked (no sync per step)."""
    flat = labels.view(-1)  # (B*T,)
    where = torch.nonzero(flat != IGNORE).squeeze(1)  # (M,)
    return where, flat[where]


def mlm_loss(model: TransformerModel, inputs: torch.Tensor, where: torch.Tensor, target: torch.Tensor, pad_id: int,
             has_pad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) masked inputs, masked positions (M,) and targets (M,), all on the device -> (mean loss, correct)."""
    attn = (inputs != pad_id).long() if has_pad else None  # None lets SDPA use its no-mask (flash) kernel
    hidden = model(inputs, attn)  # (B, T, H)
    # The vocabulary projection, most of the head's cost, only at the ~15 % masked positions.
    logits = model.mlm(hidden.reshape(-1, hidden.shape[-1]).index_select(0, where))  # (M, V)
    loss = F.cross_entropy(logits.float(), target)
    correct = (logits.argmax(-1) == target).sum()
    return loss, correct


@torch.no_grad()
def evaluate(model: TransformerModel, blocks: np.ndarray, masker: Masker, pad_id: int, device: torch.device,
             batch_size: int, seed: int, autocast: Callable) -> dict[str, float]:
    """Held-out masked-token loss and accuracy, with masks from a fixed seed: the same positions every call."""
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for lo in range(0, len(blocks), batch_size):
        ids = torch.from_numpy(np.asarray(blocks[lo: lo + batch_size], dtype=np.int64))  # (B, T)
        inputs, labels = masker(ids, gen)
        where, target = select_masked(labels)
        n = len(where)
        with autocast():
            loss, right = mlm_loss(model, inputs.to(device), where.to(device), target.to(device), pad_id,
                                   bool((ids == pad_id).any()))
        total += float(loss) * n
        correct += int(right)
        count += n
    model.train(was_training)
    return {"eval_loss": total / max(count, 1), "eval_accuracy": correct / max(count, 1), "eval_masked": count}


def _load_tokenizer(args: PretrainArgs, data_root: Path) -> tuple[Tokenizer, Path]:
    if args.tokenizer:
        path = Path(args.tokenizer)
    elif args.model:
        path = Path(args.model)
    else:
        path = data_root / "roberta-tokenizer"
    if not path.is_dir():
        raise InvalidInputError(f"tokenizer directory {path} does not exist (pass --tokenizer DIR)")
    return Tokenizer.from_dir(path, family="roberta", type_vocab_size=1), path


def pretrain(args: PretrainArgs, data_root: Path, on_log: Callable[[dict], None] | None = None,
             progress: Any = None) -> dict[str, Any]:
    """Run (or resume) pretraining; returns the final metrics. `progress` is an optional rich Progress."""
    if args.packing not in PACKINGS:
        raise InvalidInputError(f"unknown packing {args.packing!r}; choose {choices(PACKINGS)}")
    for name in ("batch_size", "grad_accum", "max_length", "log_every"):
        if getattr(args, name) < 1:
            raise InvalidInputError(f"{name} must be >= 1, got {getattr(args, name)}")
    list_files(args.data)  # a wrong data path fails now, not after the model is built
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pretrain_args.json").write_text(json.dumps(asdict(args), indent=1) + "\n")  # for reports and people
    device = resolve_device(args.device)
    bf16 = args.bf16 if args.bf16 is not None else (device.type == "cuda" and torch.cuda.is_bf16_supported())

    resume_from = ckpt.list_checkpoints(out)[-1] if args.resume and ckpt.list_checkpoints(out) else None
    state = ckpt.load_state(resume_from) if resume_from else None
    if state:
        changed = [k for k in TRAJECTORY if state["args"].get(k) != getattr(args, k)]
        if changed:
            was = ", ".join(f"{k}={state['args'][k]!r}" for k in changed)
            raise InvalidInputError(f"cannot resume {resume_from}: changed arguments {', '.join(changed)} "
                                    f"(the checkpoint has {was})")

    tok, tok_dir = _load_tokenizer(args, data_root)
    sp = Specials.of(tok.tok)
    task = progress.add_task("tokenizing", total=None) if progress else None
    blocks = load_blocks(args.data, tok.tok, args.max_length, Path(args.cache_dir or out / "cache"), args.packing,
                         progress=(lambda n: progress.advance(task, n)) if progress else None)
    if progress:
        progress.remove_task(task)
    train_idx, eval_idx = split_blocks(len(blocks))
    eval_blocks = blocks[eval_idx[: args.max_eval_blocks]]  # (E, L) held out, never trained on
    per_step = args.batch_size * args.grad_accum
    max_steps = args.max_steps or max(1, math.ceil(args.epochs * len(train_idx) / per_step))
    schedule_steps = args.schedule_steps or max_steps

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if resume_from:
        model = build_model(resume_from)
    elif args.model:
        model = build_continued(Path(args.model))
    else:
        model = build_fresh(args, tok.vocab_size, sp.pad)
    if model.cfg.max_tokens < args.max_length:
        raise InvalidInputError(f"max_length {args.max_length} > the model's {model.cfg.max_tokens} positions")
    model.to(device).train()
    optimizer = make_optimizer(model, args.lr, args.weight_decay, fused=device.type == "cuda")
    scheduler = linear_schedule(optimizer, round(args.warmup * schedule_steps), schedule_steps)
    masker = Masker(model.cfg.vocab_size, sp.mask, sp.all, args.mlm_probability)
    gen = torch.Generator().manual_seed(args.seed + 1)  # masking draws only: independent of dropout's RNG
    batches = Batches(blocks, train_idx, args.seed)
    step, cursor, tokens, train_s = 0, 0, 0, 0.0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        gen.set_state(state["mask_generator"])
        ckpt.set_rng_state(state["rng"])
        step, cursor, tokens, train_s = state["step"], state["cursor"], state["tokens"], state["train_seconds"]

    log_path = out / "log.jsonl"
    kept = []  # a resumed run keeps the log up to its checkpoint: records after it are replayed exactly
    if state and log_path.exists():
        kept = [line for line in log_path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    log_file = log_path.open("w")
    log_file.write("".join(line + "\n" for line in kept))

    def log(record: dict) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()
        if on_log:
            on_log(record)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def evaluate_now() -> dict:
        return evaluate(model, eval_blocks, masker, sp.pad, device, args.eval_batch_size, args.eval_seed, autocast)

    bar = progress.add_task("pretraining", total=max_steps, completed=step) if progress else None
    t0, tokens0 = time.perf_counter(), tokens
    while step < max_steps:
        loss_sum = torch.zeros((), device=device)
        correct_sum = torch.zeros((), device=device, dtype=torch.long)
        masked = 0
        for _ in range(args.grad_accum):
            ids = torch.from_numpy(batches.take(cursor, args.batch_size))  # (B, L)
            cursor += args.batch_size
            inputs, labels = masker(ids, gen)  # (B, L) each, on the CPU
            where, target = select_masked(labels)  # (M,), (M,)
            has_pad = bool((ids == sp.pad).any())
            tokens += int((ids != sp.pad).sum())
            if device.type == "cuda":  # pinned: the copies run asynchronously, overlapping the previous step
                inputs, where, target = inputs.pin_memory(), where.pin_memory(), target.pin_memory()
            with autocast():
                loss, correct = mlm_loss(model, inputs.to(device, non_blocking=True),
                                         where.to(device, non_blocking=True), target.to(device, non_blocking=True),
                                         sp.pad, has_pad)
            (loss / args.grad_accum).backward()
            loss_sum += loss.detach()
            correct_sum += correct
            masked += len(where)
        if args.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        lr = scheduler.get_last_lr()[0]  # the lr this update used
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if progress:
            progress.update(bar, completed=step)
        if step % args.log_every == 0 or step == max_steps:
            loss_val = float(loss_sum) / args.grad_accum  # float() waits for the device: timing is honest
            now = time.perf_counter()
            elapsed = train_s + now - t0
            log({"step": step, "loss": loss_val, "acc": int(correct_sum) / max(masked, 1), "lr": lr,
                 "tokens": tokens, "sequences": cursor, "tokens_per_s": (tokens - tokens0) / max(now - t0, 1e-9),
                 "elapsed_s": elapsed})
        stop = step == max_steps
        if args.eval_every and step % args.eval_every == 0 and not stop:
            pause = time.perf_counter()
            log({"step": step, **evaluate_now()})
            t0 += time.perf_counter() - pause  # evaluation is not training time
        if args.save_every and step % args.save_every == 0 and not stop:
            pause = time.perf_counter()
            ckpt.save_checkpoint(out, step, model, tok_dir, {
                "step": step, "cursor": cursor, "tokens": tokens,
                "train_seconds": train_s + pause - t0, "args": asdict(args),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "mask_generator": gen.get_state(), "rng": ckpt.rng_state(),
            }, args.save_total_limit)
            t0 += time.perf_counter() - pause

    end = time.perf_counter()
    rate = (tokens - tokens0) / max(end - t0, 1e-9)  # this process's training only: no eval, no checkpoints
    final = {"step": step, **evaluate_now(), "tokens": tokens, "train_seconds": train_s + end - t0,
             "tokens_per_s": rate}
    final["eval_perplexity"] = math.exp(min(final["eval_loss"], 50))
    log(final)
    log_file.close()
    model.eval()
    save_model(model, out)
    ckpt.copy_tokenizer(tok_dir, out)
    metrics = {"device": str(device), "bf16": bf16, "params": sum(p.numel() for p in model.parameters()),
               "train_blocks": len(train_idx), "eval_blocks": len(eval_blocks), **final}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics
