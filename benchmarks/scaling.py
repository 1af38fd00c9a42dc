"""How `embed` throughput grows with the number of inputs and with their length (issue 7's scaling report).

Two sweeps with one model, in one process, real prose from the pretraining corpus (benchmarks/throughput.py's
text generator):
- count: N texts of 8-64 tokens (N = 1k, 10k, 100k by default; 10k distinct texts, repeated beyond that), one
  `m.embed` call each — what a batch job sees; throughput should rise and then stay flat (fixed costs amortised);
- length: texts of exactly L tokens (16 → 512) with the same token total per point, and texts of ~4,096 tokens,
  which the pipeline cuts into overlapping 512-token windows (nothing truncated) and averages back.
Prints one JSON line per point (tokens/s counts each input's own tokens, specials included; for the chunked point
also the tokens actually computed, windows and their overlap included) and peak RSS.

Run: `.venv/bin/python benchmarks/scaling.py` (default model, fp32 and the `auto` fast path);
     `--counts 1000,10000 --lengths 16,128 --dtypes float32` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_texts  # noqa: E402 - the same prose generator as the engine benchmark

import robertaops as ro  # noqa: E402


def measure(m, texts: list[str]) -> dict:
    tokens = sum(map(len, m.tokenize(texts)))
    t = time.perf_counter()
    m.embed(texts)
    seconds = time.perf_counter() - t
    return {"texts": len(texts), "tokens": tokens, "seconds": round(seconds, 3),
            "tok_per_s": round(tokens / seconds, 1), "texts_per_s": round(len(texts) / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="default: the packaged default model")
    ap.add_argument("--dtypes", default="float32,auto")
    ap.add_argument("--counts", default="1000,10000,100000")
    ap.add_argument("--lengths", default="16,64,128,256,512")
    ap.add_argument("--tokens-per-length", type=int, default=65536, help="token total of each length point")
    ap.add_argument("--long-texts", type=int, default=16, help="texts of ~4,096 tokens (chunked); 0 = skip")
    args = ap.parse_args()
    counts = [int(x) for x in args.counts.split(",") if x]
    lengths = [int(x) for x in args.lengths.split(",") if x]
    probe = ro.load(args.model)
    unique = make_texts(probe, min(max(counts + [1]), 10000), 8, 64, seed=0)
    pool = (unique * (max(counts + [1]) // len(unique) + 1))[: max(counts + [1])]  # repeats cost the same: no cache
    by_length = {n: make_texts(probe, max(1, args.tokens_per_length // n), n, n, seed=n) for n in lengths}
    long = make_texts(probe, args.long_texts, 4096, 4096, seed=7) if args.long_texts else []
    for dtype in args.dtypes.split(","):
        m = ro.load(args.model, dtype=dtype)
        m.embed(pool[:64])  # warm-up
        for n in counts:
            print(json.dumps({"dtype": m.dtype, "sweep": "count", **measure(m, pool[:n])}), flush=True)
        for n, texts in by_length.items():
            print(json.dumps({"dtype": m.dtype, "sweep": "length", "length": n, **measure(m, texts)}), flush=True)
        if long:
            computed = sum(len(w) for w in m.runner.windows(long))
            row = measure(m, long)
            print(json.dumps({"dtype": m.dtype, "sweep": "length", "length": "~4096 (windows of "
                              f"{m.max_length})", **row, "computed_tokens": computed,
                              "computed_tok_per_s": round(computed / row["seconds"], 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
