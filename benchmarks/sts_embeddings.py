"""STS-B test Spearman: our embeddings vs sentence-transformers' for the same model, then after `finetune embedding`.

1. sentence-transformers `SentenceTransformer(dir).encode` and robertaops `ro.load(dir).embed` on the STS-B test
   pairs (sts-test.csv, 1,379 pairs with gold scores): Spearman of cosine vs gold, both sides.
2. `robertaops finetune embedding` (multiple-negatives ranking loss, in-batch negatives) on STS-B train pairs with
   score >= --min-score (positives only), dev = sts-dev.csv, then `robertaops evaluate --task embedding` on
   sts-test.csv. All printed as one table; the fine-tuning command is printed too.

Run: .venv/bin/python benchmarks/sts_embeddings.py [--model DIR] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROBERTAOPS_DATA", REPO.parent / "shared" / "data")) / "stsb"
COLUMNS = ["--format", "tsv", "--text-column", "5", "--text-pair-column", "6", "--label-column", "4"]


def cli(*args: str) -> dict:
    cmd = [sys.executable, "-m", "robertaops.cli", *args]
    print("#", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--min-score", type=float, default=4.0)
    ap.add_argument("--output", default=str(REPO / "runs" / "bench-stsb-embedding"))
    a = ap.parse_args()

    import robertaops as ro
    from robertaops.resolve import resolve
    from robertaops.training.data import read_table
    from robertaops.training.metrics import sts_spearman

    path = resolve(a.model)
    test = read_table(DATA / "sts-test.csv", fmt="tsv", text_column="5", pair_column="6", label_column="4",
                      label_kind="score").rows
    left, right, gold = [r.text for r in test], [r.pair for r in test], [r.label for r in test]
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    st = SentenceTransformer(str(path), device="cpu")
    st_score = sts_spearman(st.encode(left), st.encode(right), gold)
    t_st = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = ro.load(path)
    our_score = sts_spearman(m.embed(left), m.embed(right), gold)
    t_ours = time.perf_counter() - t0
    model = ["--model", a.model] if a.model else []
    tuned = cli("finetune", "embedding", *model, "--train", str(DATA / "sts-train.csv"), "--dev",
                str(DATA / "sts-dev.csv"), *COLUMNS, "--min-score", str(a.min_score), "--epochs", str(a.epochs),
                "--lr", str(a.lr), "--batch-size", str(a.batch_size), "--output", a.output, "--tracking-uri", "none")
    after = cli("evaluate", "--model", a.output, "--task", "embedding", "--data", str(DATA / "sts-test.csv"),
                *COLUMNS)
    print(f"model {a.model or 'all-MiniLM-L6-v2'}; STS-B test ({len(test)} pairs), Spearman x 100 of cosine vs gold")
    print("| embeddings | STS-B test Spearman | seconds |")
    print("|---|---:|---:|")
    print(f"| sentence-transformers encode | {st_score * 100:.2f} | {t_st:.0f} |")
    print(f"| robertaops embed | {our_score * 100:.2f} | {t_ours:.0f} |")
    print(f"| robertaops after finetune embedding ({tuned['train_rows']} train pairs with score >= {a.min_score}, "
          f"{a.epochs} epoch, lr {a.lr}, batch {a.batch_size}; dev before {tuned['before']['spearman'] * 100:.2f},"
          f" after {tuned['metrics']['spearman'] * 100:.2f}) | {after['metrics']['spearman'] * 100:.2f} | "
          f"{tuned['train_seconds']:.0f} (train) |")


if __name__ == "__main__":
    main()
