"""Model tiering on SST-2: a quantized copy of a fine-tuned classifier answers, unsure inputs escalate to the fp32 one.

For each threshold: the share of dev inputs escalated, the cascade's accuracy against the full model alone, and the
compute it costs relative to running the full model on everything, measured as wall time in this process
(small model on all inputs + full model on the escalated ones, over full model on all). Target (issue 7): >= 40%
less compute for <= 0.5 pt accuracy lost.

Run (a fine-tuned SST-2 checkpoint first, e.g. `robertaops finetune classify --train $D/sst2/train.tsv --dev
$D/sst2/dev.tsv --text-column sentence --output runs/sst2`):
    python benchmarks/cascade.py --model runs/sst2 [--small-dtype int8|bfloat16] [--small OTHER_CHECKPOINT]
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

import robertaops as ro

DATA = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="fine-tuned SST-2 classifier (the full model)")
    ap.add_argument("--small", default=None, help="the small model (default: --model itself at --small-dtype)")
    ap.add_argument("--small-dtype", default="int8", help="dtype of the small model: int8 or bfloat16 (quantized)")
    ap.add_argument("--thresholds", default="0.6,0.7,0.8,0.9,0.95,0.99")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    with open(DATA / "sst2" / "dev.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts, gold = [r["sentence"] for r in rows], [r["label"] for r in rows]
    large = ro.load(args.model)
    small = ro.load(args.small or args.model, dtype=args.small_dtype)
    large.classify(texts[:32]), small.classify(texts[:32])  # warm-up

    best = {}
    for _ in range(args.repeats):  # best of repeats, interleaved
        for name, m in (("large", large), ("small", small)):
            rows_out, seconds = timed(lambda m=m: m.classify(texts, top_k=None))
            if name not in best or seconds < best[name][1]:
                best[name] = (rows_out, seconds)
    (large_rows, t_large), (small_rows, t_small) = best["large"], best["small"]
    accuracy = lambda rows: float(np.mean([r[0]["label"] == g for r, g in zip(rows, gold, strict=True)]))  # noqa: E731
    acc_large, acc_small = accuracy(large_rows), accuracy(small_rows)
    print(f"SST-2 dev, {len(texts)} sentences. full model ({large.dtype}): accuracy {acc_large:.2%}, {t_large:.2f} s; "
          f"small ({small.dtype}): accuracy {acc_small:.2%}, {t_small:.2f} s ({t_small / t_large:.0%} of the full)")
    print("| threshold | escalated | accuracy | vs full model | compute vs full |")
    print("|---|---|---|---|---|")
    for threshold in map(float, args.thresholds.split(",")):
        cascade = ro.Cascade(small, large, threshold=threshold)
        escalated = [i for i, r in enumerate(small_rows) if r[0]["score"] < threshold]
        _, t_escalated = timed(lambda e=escalated: large.classify([texts[i] for i in e], top_k=None) if e else [])
        got, _ = timed(lambda c=cascade: c.classify(texts, top_k=1))
        acc = accuracy(got)
        compute = (t_small + t_escalated) / t_large
        print(f"| {threshold:.2f} | {len(escalated) / len(texts):.1%} | {acc:.2%} | {100 * (acc - acc_large):+.2f} pt "
              f"| {compute:.0%} ({1 - compute:+.0%} saved) |")


if __name__ == "__main__":
    main()
