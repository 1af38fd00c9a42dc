"""MLM training-step throughput: robertaops' pretraining step against transformers' `RobertaForMaskedLM`, same process.

What is measured
- The same architecture (default: the `small` preset = roberta-novels-small: 6 layers, hidden 384, vocab 50,265),
  the same initial weights (transformers' init, copied into ours through the HF checkpoint format), the same real
  token blocks (packed from pretrain-corpus part-00, --batch x --seq), the same masks (15 %, 80/10/10), AdamW with
  the recipe's settings and grad clipping 1.0, dropout on, in training mode.
- transformers as users train it: `model(input_ids, labels=labels).loss` (its head projects every position to the
  vocabulary, then ignores the unmasked ones), default attention implementation (printed).
- robertaops: `training.pretrain.mlm_loss` (the MLM head only at masked positions), same optimiser.
- A step = forward + backward + clip + optimiser step. Tokens/s = batch * seq / seconds, median of --steps timed
  steps after 2 warm-up steps each, the two sides interleaved step by step so machine load hits both alike.

Run: `cd /work/main && .venv/bin/python benchmarks/pretrain_speed.py` (smoke: `--layers 2 --steps 2`).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer
from transformers import RobertaConfig, RobertaForMaskedLM

from robertaops.model.checkpoint import build_model
from robertaops.training.masking import Masker
from robertaops.training.mlm_data import Packer, Specials
from robertaops.training.optim import make_optimizer
from robertaops.training.pretrain import mlm_loss, select_masked

DATA = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def real_blocks(n: int, seq: int) -> tuple[torch.Tensor, Specials]:
    """The first `n` packed blocks of pretrain-corpus part-00 (a quarter of the corpus), (n, seq) long."""
    tok = Tokenizer.from_file(str(DATA / "roberta-tokenizer" / "tokenizer.json"))
    packer = Packer(tok, seq)
    with gzip.open(DATA / "pretrain-corpus" / "part-00.txt.gz", "rt") as f:
        for line in f:
            if line.strip():
                packer.add_paragraph(tok.encode(line.strip(), add_special_tokens=False).ids)
            if len(packer.blocks) > n:
                break
    return torch.from_numpy(packer.finish()[:n]).long(), Specials.of(tok)  # (n, seq)


def hf_mlm_config(layers: int = 6, hidden: int = 384, heads: int = 6, ffn: int = 1536) -> RobertaConfig:
    """roberta-novels-small's architecture (our `small` preset, LayerNorm eps 1e-5 as in its config.json; transformers
    defaults to 1e-12) as a transformers config, resizable."""
    return RobertaConfig(vocab_size=50265, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=ffn, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)


def optimizer_step(model, opt, loss, scheduler=None) -> float:
    """The end of a training step, as both sides take it: backward, clip at 1.0, step, zero the gradients."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if scheduler is not None:
        scheduler.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    args = ap.parse_args()
    torch.manual_seed(0)
    ids, sp = real_blocks(args.batch, args.seq)
    hf = RobertaForMaskedLM(hf_mlm_config(args.layers, args.hidden, args.heads, args.ffn)).train()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = build_model(Path(tmp)).train()
    masker = Masker(50265, sp.mask, sp.all)
    gen = torch.Generator().manual_seed(0)
    masks = [masker(ids, gen) for _ in range(args.steps + 2)]  # same (inputs, labels) for both sides
    opt_hf, opt_ours = make_optimizer(hf, 5e-4), make_optimizer(ours, 5e-4)

    def step_hf(inputs, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = hf(input_ids=inputs, attention_mask=(inputs != sp.pad).long(), labels=labels).loss
        return optimizer_step(hf, opt_hf, loss)

    def step_ours(inputs, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            where, target = select_masked(labels)  # (M,), (M,) on the CPU, as in the training loop
            loss, _ = mlm_loss(ours, inputs, where, target, sp.pad, bool((inputs == sp.pad).any()))
        return optimizer_step(ours, opt_ours, loss)

    times: dict[str, list[float]] = {"transformers": [], "robertaops": []}
    losses: dict[str, list[float]] = {"transformers": [], "robertaops": []}
    for i, (inputs, labels) in enumerate(masks):
        for name, fn in (("transformers", step_hf), ("robertaops", step_ours)):
            t = time.perf_counter()
            losses[name].append(fn(inputs, labels))
            if i >= 2:
                times[name].append(time.perf_counter() - t)
    tokens = args.batch * args.seq
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, transformers {transformers.__version__} "
          f"(attn {hf.config._attn_implementation}), load avg {os.getloadavg()[0]:.1f}", file=sys.stderr)
    print(f"# step-1 loss: transformers {losses['transformers'][0]:.4f}, robertaops {losses['robertaops'][0]:.4f}",
          file=sys.stderr)
    rate = {k: tokens / statistics.median(v) for k, v in times.items()}
    shape = f"L{args.layers} H{args.hidden} batch {args.batch}x{args.seq}{' bf16' if args.bf16 else ' fp32'}"
    print(f"MLM train step, {shape}: transformers {rate['transformers']:,.0f} tok/s, robertaops "
          f"{rate['robertaops']:,.0f} tok/s, ratio {rate['robertaops'] / rate['transformers']:.2f}x")


if __name__ == "__main__":
    main()
