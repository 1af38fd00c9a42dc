"""Compare a `robertaops pretrain` run's loss curve with the reference (roberta-novels-small's pretrain_log.json),
per token seen: our step s has seen s x batch x seq block tokens, the reference's step r has seen r x 256 x 128; the
reference loss at our token count is interpolated linearly between its logged points (it logs steps 1, 100, 200, ...).
Losses are single-step training losses on freshly masked batches (noisy: ±0.05 step to step). Also prints the run's
final held-out metrics beside the reference's, and fill-mask examples from the run's model.

The two held-out numbers come from different 1 % splits and masks. `--reference-on-our-split` also evaluates the
reference checkpoint with our evaluation (our held-out blocks, the same fixed-seed masks the run's final number
used), on the CPU: the like-for-like comparison. The reference may have trained on some of our held-out blocks, so
that figure flatters it, if anything.

Run: `.venv/bin/python benchmarks/pretrain_curve.py runs/pretrain-cpu [--every 5]`
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REFERENCE = DATA.parent / "models" / "roberta-novels-small"
EXAMPLES = ["It was a dark and stormy <mask>.", "She opened the <mask> and looked outside.",
            "The capital of France is <mask>."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--every", type=int, default=1, help="print every Nth logged step")
    ap.add_argument("--no-fill-mask", action="store_true")
    ap.add_argument("--reference-on-our-split", action="store_true",
                    help="evaluate the reference checkpoint on this run's held-out blocks (CPU, about a minute)")
    args = ap.parse_args()
    ref = json.loads((REFERENCE / "pretrain_log.json").read_text())
    ref_tokens = np.array([r["step"] * ref["batch"] * ref["seq"] for r in ref["steps"]], dtype=float)
    ref_loss = np.array([r["loss"] for r in ref["steps"]])
    log = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()]
    train = [r for r in log if "loss" in r]
    seq = json.loads((args.run / "pretrain_args.json").read_text())["max_length"]
    print("| step | block tokens seen | robertaops loss | reference loss (linear between its logged points) | lr |")
    print("|---:|---:|---:|---:|---:|")
    for i, r in enumerate(train):
        if i % args.every and i != len(train) - 1:
            continue
        seen = r["sequences"] * seq
        inside = ref_tokens[0] <= seen <= ref_tokens[-1]  # no extrapolation outside the reference's logged range
        ref_at = f"{np.interp(seen, ref_tokens, ref_loss):.3f}" if inside else "–"
        print(f"| {r['step']} | {seen:,} | {r['loss']:.3f} | {ref_at} | {r['lr']:.2e} |")
    finals = [r for r in log if "eval_loss" in r]
    if not finals:
        print("\n(no held-out evaluation in the log yet)")
        return
    final = finals[-1]
    print(f"\nheld-out masked-token loss {final['eval_loss']:.3f} (reference {ref['final_eval_loss']:.3f}), accuracy "
          f"{final['eval_accuracy']:.3f} (reference {ref['final_eval_acc']:.3f}); train tokens/s "
          f"{final.get('tokens_per_s', float('nan')):,.0f} (reference {ref['tokens_seen'] / ref['seconds']:,.0f} "
          f"on one H200)")
    if args.reference_on_our_split:
        ours = evaluate_on_split(REFERENCE, json.loads((args.run / "pretrain_args.json").read_text()))
        print(f"reference checkpoint on our held-out split: loss {ours['eval_loss']:.3f}, accuracy "
              f"{ours['eval_accuracy']:.3f} ({ours['eval_masked']:,} masked tokens)")
    if not args.no_fill_mask:
        import robertaops as ro

        model = ro.load(str(args.run))
        for text in EXAMPLES:
            print(f"{text!r} -> {', '.join(p['token_str'].strip() for p in model.fill_mask(text))}")


def evaluate_on_split(checkpoint: Path, run_args: dict) -> dict:
    """A checkpoint's held-out masked-token loss/accuracy exactly as `robertaops pretrain` computes its final one."""
    import contextlib

    import torch

    from robertaops.model.checkpoint import build_model
    from robertaops.training import pretrain as pt
    from robertaops.training.masking import Masker
    from robertaops.training.mlm_data import Specials, load_blocks, split_blocks

    args = pt.PretrainArgs(**run_args)
    tok, _ = pt._load_tokenizer(args, DATA)
    sp = Specials.of(tok.tok)
    blocks = load_blocks(args.data, tok.tok, args.max_length, Path(args.cache_dir or Path(args.output) / "cache"),
                         args.packing)
    held_out = blocks[split_blocks(len(blocks))[1][: args.max_eval_blocks]]
    model = build_model(checkpoint, pt.EncoderConfig.from_file(checkpoint / "config.json").with_(task="mlm"))
    masker = Masker(model.cfg.vocab_size, sp.mask, sp.all, args.mlm_probability)
    return pt.evaluate(model, held_out, masker, sp.pad, torch.device("cpu"), args.eval_batch_size, args.eval_seed,
                       contextlib.nullcontext)


if __name__ == "__main__":
    main()
