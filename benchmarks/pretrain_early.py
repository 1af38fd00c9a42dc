"""The first steps of the reference pretraining recipe, transformers and robertaops side by side on the same blocks.

Why: on the GPU run (RESULTS.md, "Full reference budget on one H200"), our loss at step 100 was 8.7-8.8 where the
reference's log says 7.08 at the same learning rate, and our final loss ended 0.02-0.03 above its 3.020. This
asks whether transformers itself, following the recipe the reference's README gives, learns faster than we do.

Each side follows the recipe with its own code and its own random streams:
- transformers: `RobertaForMaskedLM(config)` initialised by transformers, masks from `DataCollatorForLanguageModeling`
  (15 %, 80/10/10), the head on the masked positions only (as the README says the reference did), torch AdamW
  (0.9, 0.98), eps 1e-6, weight decay 0.01 except on embeddings, biases and LayerNorms (by name and shape),
  `get_linear_schedule_with_warmup`, clipping at 1.0;
- robertaops: `pretrain.build_fresh`, `Masker`, `mlm_loss`, `make_optimizer`, `linear_schedule`, clipping at 1.0.
Both see the same blocks in the same order (packed from pretrain-corpus part-00, shuffled once) and the reference's
schedule: 692 warm-up steps of 6,921, peak 5e-4, so step s has the reference's learning rate whatever --batch is.
Dropout is on. bf16 autocast on CUDA, fp32 on the CPU. Printed: the mean training loss of each side over every
--every steps, and the reference log's loss where it logged that step (the reference: 6 layers, batch 256).

Run: `.venv/bin/python benchmarks/pretrain_early.py` (CPU: 2 layers, batch 32, 100 steps, ~7 min);
the reference's shape: `--layers 6 --batch 256 --steps 700 --device cuda`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import transformers
from pretrain_speed import DATA, hf_mlm_config, optimizer_step, real_blocks
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    RobertaForMaskedLM,
    get_linear_schedule_with_warmup,
)

from robertaops.training.masking import Masker
from robertaops.training.optim import linear_schedule, make_optimizer
from robertaops.training.pretrain import PretrainArgs, build_fresh, mlm_loss, select_masked

PEAK_LR, WARMUP, SCHEDULE = 5e-4, 692, 6921  # the reference's recipe (its README and log)
REFERENCE_LOG = DATA.parent / "models" / "roberta-novels-small" / "pretrain_log.json"


class TransformersSide:
    def __init__(self, args, sp, device):
        torch.manual_seed(args.seed)
        self.model = RobertaForMaskedLM(hf_mlm_config(args.layers)).to(device).train()
        named = list(self.model.named_parameters())  # a tied tensor once
        exempt = {n for n, p in named if p.ndim < 2 or "embeddings" in n}  # biases and norms are the 1-D ones
        groups = [{"params": [p for n, p in named if n not in exempt], "weight_decay": 0.01},
                  {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=PEAK_LR, betas=(0.9, 0.98), eps=1e-6)
        self.sched = get_linear_schedule_with_warmup(self.opt, WARMUP, SCHEDULE)
        tok = AutoTokenizer.from_pretrained(DATA / "roberta-tokenizer")
        self.collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=args.seed + 1)
        self.pad, self.device = sp.pad, device

    def step(self, blocks: torch.Tensor) -> float:
        batch = self.collator([{"input_ids": b} for b in blocks.tolist()])
        inputs, labels = batch["input_ids"].to(self.device), batch["labels"].to(self.device)
        masked = labels != -100
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            hidden = self.model.roberta(input_ids=inputs, attention_mask=(inputs != self.pad).long()).last_hidden_state
            loss = F.cross_entropy(self.model.lm_head(hidden[masked]).float(), labels[masked])
        return optimizer_step(self.model, self.opt, loss, self.sched)


class RobertaopsSide:
    def __init__(self, args, sp, device):
        with tempfile.TemporaryDirectory() as tmp:  # the same architecture as transformers', from its config file
            config = hf_mlm_config(args.layers)
            config.save_pretrained(tmp)
            torch.manual_seed(args.seed)
            model = build_fresh(PretrainArgs(data="", output="", config=f"{tmp}/config.json"), 50265, sp.pad)
        self.model = model.to(device).train()
        self.opt = make_optimizer(self.model, PEAK_LR, fused=device.type == "cuda")
        self.sched = linear_schedule(self.opt, WARMUP, SCHEDULE)
        self.masker = Masker(50265, sp.mask, sp.all)
        self.gen = torch.Generator().manual_seed(args.seed + 1)
        self.pad, self.device = sp.pad, device

    def step(self, blocks: torch.Tensor) -> float:
        inputs, labels = self.masker(blocks, self.gen)
        where, target = select_masked(labels)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss, _ = mlm_loss(self.model, inputs.to(self.device), where.to(self.device), target.to(self.device),
                               self.pad, bool((inputs == self.pad).any()))
        return optimizer_step(self.model, self.opt, loss, self.sched)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    blocks, sp = real_blocks(args.batch * args.steps, 128)
    if len(blocks) < args.batch * args.steps:
        sys.exit(f"part-00 packs into {len(blocks)} blocks; --batch x --steps needs {args.batch * args.steps}")
    blocks = blocks[torch.randperm(len(blocks), generator=torch.Generator().manual_seed(1234))]
    sides = {"transformers": TransformersSide(args, sp, device), "robertaops": RobertaopsSide(args, sp, device)}
    reference = {r["step"]: r["loss"] for r in json.loads(REFERENCE_LOG.read_text())["steps"]}
    print(f"# {args.layers} layers, batch {args.batch}x128, {device}, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print("| step | lr | transformers loss | robertaops loss | reference log (6 layers, batch 256) |")
    print("|---:|---:|---:|---:|---:|")
    losses: dict[str, list[float]] = {name: [] for name in sides}
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        lr = sides["robertaops"].sched.get_last_lr()[0]
        batch = blocks[(step - 1) * args.batch: step * args.batch]
        for name, side in sides.items():  # interleaved: the same block batch, each side's own masks
            losses[name].append(side.step(batch))
        if step % args.every == 0 or step == 1:
            window = 1 if step == 1 else args.every
            mean = {name: statistics.fmean(v[-window:]) for name, v in losses.items()}
            ref = f"{reference[step]:.3f}" if step in reference else "–"
            print(f"| {step} | {lr:.2e} | {mean['transformers']:.3f} | {mean['robertaops']:.3f} | {ref} |", flush=True)
    print(f"# {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
