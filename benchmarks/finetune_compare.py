"""Fine-tuning, ours vs transformers' Trainer: SST-2 dev accuracy and training examples/s, same machine, model,
data subset and hyper-parameters (see benchmarks/finetune_hf.py for the reference side).

Each side runs as its own process, one after the other (fp32 reference, ours fp32, ours --bf16 unless
--no-bf16), with the load average printed before each: the CPU is shared, so compare ratios taken in one run.
Our examples/s is the training loop's (forward, backward, optimiser; dev evaluation excluded), the reference's is
examples / wall time of `trainer.train()` (which runs no evaluation either). Because other jobs share the CPU,
examples per CPU-second (process CPU time over the same span, all threads) is printed too: it moves far less with
the machine's load than wall time. Also printed: each process's total wall time (load, tokenization, evaluation).

--task conll: CoNLL-2003 NER instead (benchmarks/finetune_ner_hf.py as the reference; ours trains with
`finetune ner`, first-subword labels, then `evaluate --task ner` on test.txt; both report test entity F1).

Run: .venv/bin/python benchmarks/finetune_compare.py --max-train 2000 [--model DIR] [--task conll]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROBERTAOPS_DATA", REPO.parent / "shared" / "data"))


def run(cmd: list[str]) -> tuple[dict, float]:
    print(f"# load average {os.getloadavg()[0]:.2f}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["sst2", "conll"], default="sst2")
    ap.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2")
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--output", default=str(REPO / "runs" / "bench-sst2"))
    a = ap.parse_args()
    conll = a.task == "conll"
    d = DATA / ("conll2003" if conll else "sst2")
    train, dev = (d / "train.txt", d / "valid.txt") if conll else (d / "train.tsv", d / "dev.tsv")
    common = ["--train", str(train), "--dev", str(dev), "--max-train", str(a.max_train), "--epochs", str(a.epochs),
              "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--max-length", str(a.max_length),
              "--seed", str(a.seed)]
    columns = [] if conll else ["--text-column", "sentence", "--label-column", "label"]
    model = ["--model", a.model] if a.model else []
    py = sys.executable
    reference = ["benchmarks/finetune_ner_hf.py", "--test", str(d / "test.txt")] if conll else [
        "benchmarks/finetune_hf.py"]
    results = [("transformers Trainer fp32", *run([py, *reference, *model, *common, *columns]))]
    ours = [py, "-m", "robertaops.cli", "finetune", "ner" if conll else "classify", *model, *common, *columns,
            "--patience", "0", "--tracking-uri", "none"]
    variants = [("robertaops fp32", [])] + ([] if a.no_bf16 else [("robertaops bf16 autocast", ["--bf16"])])
    for name, extra in variants:
        out = a.output + ("-conll" if conll else "") + ("-bf16" if extra else "-fp32")
        r, wall = run([*ours, *extra, "--output", out])
        if conll:  # test-set entity F1 through the served pipeline, as the reference reports it
            r["metrics"] = run([py, "-m", "robertaops.cli", "evaluate", "--model", out, "--task", "ner", "--data",
                                str(d / "test.txt")])[0]["metrics"]
        results.append((name, r, wall))
    ref = results[0][1]
    what = (f"CoNLL-2003 train subset {a.max_train} sentences; metric = test entity F1 (3,453 sentences)" if conll
            else f"SST-2 train subset {a.max_train}; metric = dev accuracy (full dev, 872)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model "
          f"{a.model or 'all-MiniLM-L6-v2'}; {what}; seed {a.seed}, {a.epochs} epoch(s), "
          f"batch {a.batch_size}, lr {a.lr}, max length {a.max_length}")
    print(f"| side | {'test F1' if conll else 'dev accuracy'} | train examples/s (wall) | vs Trainer | "
          "train examples per CPU-second | vs Trainer | process wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r, wall in results:
        acc = r["accuracy"] if "accuracy" in r else r["metrics"]["f1" if conll else "accuracy"]
        speed, cpu = r["train_examples_per_second"], r["train_examples_per_cpu_second"]
        print(f"| {name} | {acc * 100:.2f} | {speed:.1f} | {speed / ref['train_examples_per_second']:.2f}x | "
              f"{cpu:.1f} | {cpu / ref['train_examples_per_cpu_second']:.2f}x | {wall:.0f} |")


if __name__ == "__main__":
    main()
