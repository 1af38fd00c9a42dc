"""The int8 path with its matmuls on AMX tiles (model/amx.py) against the same path on torch._int_mm, in one process.

Two parts, both on random roberta-base weights (12 layers), 2 threads:
1. The 48 matmuls of one forward (Q/K/V fused, out, FFN in, FFN out; 85 MB of int8 weights, so they stream from
   cache or memory as in a real forward), at 1 to 2,048 tokens: best of --repeats, ms and GOP/s.
2. `m.embed` on the int8 model loaded twice, once per matmul (the same checkpoint, interleaved rounds): the
   throughput.py workloads (mixed 8-128, short 8-64, 8 x 256 tokens) and one 16-token input's latency; and the
   largest difference between the two models' vectors (the sums are the same integers; only the compiled code
   around them may round differently).

Needs a CPU with AMX int8 (Intel Xeon 4th gen on) and a C compiler; exits 2 otherwise.
Run: python benchmarks/int8_amx.py [--n 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import robertaops as ro
from robertaops.model import amx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import cpu_name, make_checkpoint, make_texts, timed_rounds  # noqa: E402

SHAPES = [(2304, 768), (768, 768), (3072, 768), (768, 3072)] * 12  # (out, in) of each Linear, fused QKV first


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def matmuls(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    weights = [torch.randint(-127, 128, s, dtype=torch.int8, generator=g) for s in SHAPES]
    tiles = [amx.pack(w) for w in weights]
    int_mm = [w.t().contiguous() for w in weights]
    print("| tokens | torch._int_mm ms | AMX ms | AMX GOP/s | speed-up |\n|---:|---:|---:|---:|---:|")
    for m in (1, 16, 32, 64, 128, 256, 512, 2048):
        x = {k: torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g) for k in (768, 3072)}
        ours = best_ms(lambda x=x: [amx.matmul(x[w.shape[1]], t) for w, t in zip(weights, tiles, strict=True)],
                       repeats)
        theirs = best_ms(lambda x=x: [torch._int_mm(x[w.shape[0]], w) for w in int_mm], repeats)
        gop = 2 * m * sum(a * b for a, b in SHAPES) / ours / 1e6
        print(f"| {m} | {theirs:.2f} | {ours:.2f} | {gop:,.0f} | {theirs / ours:.2f}x |")


def models(n: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp), layers=12, seed=0)
        on_amx = ro.load(tmp, dtype="int8")
        on_amx.warm_up()  # also packs each layer's weights, at its first forward
        real = amx.available
        amx.available = lambda: False  # the second model's layers pack for torch._int_mm
        try:
            on_int_mm = ro.load(tmp, dtype="int8")
            on_int_mm.warm_up()
        finally:
            amx.available = real
    assert on_amx.runner.model.encoder.layers[0].weights().qkv[0].dim() == 4
    assert on_int_mm.runner.model.encoder.layers[0].weights().qkv[0].dim() == 2
    print("\n| workload | torch._int_mm | AMX | speed-up | max abs diff of vectors |\n|---|---:|---:|---:|---:|")
    for name, (lo, hi, count) in {"mixed 8-128": (8, 128, n), "short 8-64": (8, 64, n),
                                  "long 256": (256, 256, max(8, n // 16))}.items():
        texts = make_texts(on_amx, count, lo, hi, seed=1)
        tokens = sum(map(len, on_amx.tokenize(texts)))
        fns = {k: (lambda m=m, texts=texts: m.embed(texts, pooling="mean", normalize=False))
               for k, m in (("int_mm", on_int_mm), ("amx", on_amx))}
        for fn in fns.values():
            fn()
        res = timed_rounds(fns, repeats)
        a, b = (tokens / res[k][0] for k in ("int_mm", "amx"))
        diff = float(np.abs(res["amx"][2] - res["int_mm"][2]).max())
        print(f"| {name} | {a:,.0f} tok/s | {b:,.0f} tok/s | {b / a:.2f}x | {diff:.1e} |")
    text = make_texts(on_amx, 1, 16, 16, seed=2)
    lat = {}
    for _ in range(repeats):  # alternating blocks of 30 calls: a slow spell hits both
        for k, m in (("int_mm", on_int_mm), ("amx", on_amx)):
            m.embed(text)
            times = []
            for _ in range(30):
                t = time.perf_counter()
                m.embed(text)
                times.append(time.perf_counter() - t)
            lat.setdefault(k, []).append(statistics.median(times) * 1e3)
    a, b = min(lat["int_mm"]), min(lat["amx"])
    print(f"| batch 1 x 16 tokens | {a:.2f} ms | {b:.2f} ms | {a / b:.2f}x | |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="texts per workload (long: n / 16)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not amx.available():
        print("no AMX int8 here (or no C compiler): nothing to compare", file=sys.stderr)
        return 2
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    matmuls(args.repeats * 5)
    models(args.n, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
