"""Unpadded vs padded forward passes on the CPU: what running row-wise work on real tokens only saves.

A server's batch holds whatever inputs were queued together, so its rows differ in length and the padded layout
computes on padding; the raw engine sorts a whole call by length and pads little. This times `m.embed` on batches
of unsorted inputs, and on one whole sorted call, with unpadding on (the engine's default: when >= 5% of a batch is
padding) and off, alternating in this process, and checks the two give the same vectors.

Run: python benchmarks/unpadding.py [--dtype float32|int8] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import robertaops as ro
from robertaops.model import encoder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import make_inputs  # noqa: E402 - the load test's inputs: sentences of the shared corpus

WORKLOADS = {"short 14-18": (14, 18, 64), "mixed 8-128": (8, 128, 24)}  # token range, inputs per batch
DEFAULT = encoder.MIN_PADDING_TO_UNPAD


def unpadding(on: bool) -> None:
    encoder.MIN_PADDING_TO_UNPAD = DEFAULT if on else 1.1  # above 1: never unpad


def timed(m, batches: list[list[str]], unpad: bool) -> float:
    unpadding(unpad)
    m.embed(batches[0])
    start = time.perf_counter()
    for batch in batches:
        m.embed(batch)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (a server worker has 1)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = ro.load(dtype=args.dtype)
    print(f"all-MiniLM-L6-v2 {args.dtype}, {args.threads} thread(s); best of {args.repeats}, alternating")
    print("| inputs | padded ms/batch | unpadded ms/batch | speed-up | max abs diff |")
    print("|---|---|---|---|---|")
    for name, (lo, hi, size) in WORKLOADS.items():
        texts = make_inputs(m, 20 * size, lo, hi, seed=0)
        cases = {f"{name}, {size} per batch": [texts[i:i + size] for i in range(0, 20 * size, size)],
                 f"{name}, the same {len(texts)} in one call (sorted inside)": [texts]}
        for label, batches in cases.items():
            unpadding(True)
            unpadded = m.embed(batches[0])
            unpadding(False)
            diff = float(np.abs(unpadded - m.embed(batches[0])).max())
            best = {True: float("inf"), False: float("inf")}
            for _ in range(args.repeats):
                for unpad in (False, True):
                    best[unpad] = min(best[unpad], timed(m, batches, unpad))
            pad_ms, unpad_ms = (1000 * best[u] / len(batches) for u in (False, True))
            print(f"| {label} | {pad_ms:.1f} | {unpad_ms:.1f} | {pad_ms / unpad_ms:.2f}x | {diff:.1e} |", flush=True)
    unpadding(True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
