"""Paired A/Bs for changes to the int8 path, in one process, on a machine too noisy for anything else.

Two comparisons (random roberta-base, 2 threads; each round runs both sides, in alternating order, and the
speed-up reported is the median of the per-round ratios, so a slow spell hits both sides of a round alike):
1. `--kernel-base REV`: the AMX int8 kernel (model/amx_int8.c) as it is now against its source at git revision REV,
   both compiled here with the same flags, over roberta-base's 48 matmuls at 1 to 2,048 tokens (the sums are
   checked equal to torch._int_mm's for every build).
2. Attention in bf16 against fp32 inside the compiled int8 layer (`LayerWeights.attn_dtype`) on the throughput.py
   workloads, with each side's cosine to the fp32 model.
3. `--op`: the kernel as torch's operator (`amx_int8_op.cpp`, called by the compiled layer without Python) against
   the same kernel behind a Python custom op calling it through ctypes (how it ran until the thirteenth session),
   on `embed` at batch 1 x 16 tokens and on the short and long workloads. Both sides compute the same integers, and
   both run torch.compile's layer (a Python op cannot be compiled ahead of time).
4. `--aot`: the int8 layer compiled ahead of time by AOTInductor (`model/aot_layer.py`, the default since the
   fourteenth session) against torch.compile's layer (`ROBERTAOPS_COMPILE=jit`), on `embed` at batch 1 x 16 tokens
   and on the short, mixed and long workloads, with the largest difference between their vectors.

Needs a CPU with AMX int8 and a C compiler for part 1 (skipped otherwise).
Run: python benchmarks/int8_ab.py [--kernel-base 923e572] [--rounds 12] [--op | --aot]
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import robertaops as ro
from robertaops.model import amx, quantize
from robertaops.model.aot_layer import AotStep
from robertaops.model.quantize import Int8Layer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_amx import SHAPES  # noqa: E402
from perf_table import cosine_min  # noqa: E402
from throughput import cpu_name, make_checkpoint, make_texts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build(source: str) -> ctypes.CDLL:
    # The C functions only (op=False): two operator kernels in one process would replace each other.
    lib = amx.load_library(amx.build(source, op=False))  # cached in $ROBERTAOPS_HOME/kernels like the one in use
    if lib.ro_amx_init() != 0:
        raise OSError("AMX tile state refused")
    return lib


def paired(sides: dict, rounds: int) -> tuple[dict, list[float]]:
    """Run every side once per round, order reversed every other round -> (median seconds per side, per-round
    ratios first side / last side)."""
    names = list(sides)
    times = {k: [] for k in names}
    for r in range(rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            sides[k]()
            times[k].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(times[names[0]], times[names[-1]], strict=True)]
    return {k: statistics.median(v) for k, v in times.items()}, ratios


def kernels(base: str, rounds: int) -> None:
    old = subprocess.run(["git", "show", f"{base}:src/robertaops/model/amx_int8.c"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    libs = {base: build(old), "now": build(amx.SOURCE.read_text())}
    g = torch.Generator().manual_seed(0)
    weights = [torch.randint(-127, 128, s, dtype=torch.int8, generator=g) for s in SHAPES]
    tiles = [amx.pack(w) for w in weights]
    threads = torch.get_num_threads()
    print(f"| tokens | kernel at {base} ms | now ms | now GOP/s | speed-up (median of {rounds} rounds) |")
    print("|---:|---:|---:|---:|---:|")
    for m in (1, 16, 32, 48, 64, 128, 256, 512, 2048):
        x = {k: torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g) for k in (768, 3072)}
        outs = [torch.empty(m, w.shape[0], dtype=torch.int32) for w in weights]

        def run(lib, x=x, outs=outs, m=m):
            for w, t, o in zip(weights, tiles, outs, strict=True):
                lib.ro_amx_int8_mm(x[w.shape[1]].data_ptr(), t.data_ptr(), o.data_ptr(), m, w.shape[0],
                                   w.shape[1], threads, 0)  # int32 sums (kernels before 2026-11-28 ignore the 0)

        for lib in libs.values():
            run(lib)
            for w, o in zip(weights[:4], outs[:4], strict=True):  # one layer's worth: every shape
                assert torch.equal(o, torch._int_mm(x[w.shape[1]], w.t().contiguous())), m
        med, ratios = paired({k: (lambda lib=lib: run(lib)) for k, lib in libs.items()},
                             rounds * (3 if m <= 64 else 1))
        gop = 2 * m * sum(a * b for a, b in SHAPES) / med["now"] / 1e9
        print(f"| {m} | {med[base] * 1e3:.2f} | {med['now'] * 1e3:.2f} | {gop:,.0f} | "
              f"{statistics.median(ratios):.2f}x |")


def attention(n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp), layers=12, seed=0)
        m, fp32 = ro.load(tmp, dtype="int8"), ro.load(tmp)
    layers = [layer for layer in m.runner.model.modules() if isinstance(layer, Int8Layer)]

    def use(dtype):
        for layer in layers:
            layer._weights = layer.weights()._replace(attn_dtype=dtype)

    for dtype in (torch.float32, torch.bfloat16):  # compile both variants before timing
        use(dtype)
        m.warm_up()
    print(f"\n| workload | int8, fp32 attention | int8, bf16 attention | speed-up (median of {rounds} rounds, range) "
          "| min cosine to fp32: fp32 attention / bf16 attention |\n|---|---:|---:|---:|---|")
    for name, (lo, hi, count) in {"mixed 8-128": (8, 128, n), "short 8-64": (8, 64, n),
                                  "long 256": (256, 256, max(8, n // 16))}.items():
        texts = make_texts(m, count, lo, hi, seed=1)
        tokens = sum(map(len, m.tokenize(texts)))
        ref = fp32.embed(texts, pooling="mean", normalize=False)
        cos = {}

        def side(dtype, texts=texts, ref=ref, cos=cos):
            use(dtype)
            v = m.embed(texts, pooling="mean", normalize=False)
            cos[dtype] = cosine_min(v, ref)

        med, ratios = paired({"fp32": lambda: side(torch.float32), "bf16": lambda: side(torch.bfloat16)}, rounds)
        print(f"| {name} | {tokens / med['fp32']:,.0f} tok/s | {tokens / med['bf16']:,.0f} tok/s | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{cos[torch.float32]:.5f} / {cos[torch.bfloat16]:.5f} |")


def through_python() -> object:
    """The kernel in use, as a Python custom op that calls its C function through ctypes."""
    lib = build(amx.SOURCE.read_text())

    @torch.library.custom_op("int8_ab::amx_int8_mm", mutates_args=())
    def python_matmul(a: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        a = a.contiguous()
        out = torch.empty(a.shape[0], packed.shape[0] * 16, dtype=torch.int32)
        lib.ro_amx_int8_mm(a.data_ptr(), packed.data_ptr(), out.data_ptr(), a.shape[0], out.shape[1], a.shape[1],
                           torch.get_num_threads(), 0)
        return out

    python_matmul.register_fake(lambda a, packed: a.new_empty((a.shape[0], packed.shape[0] * 16), dtype=torch.int32))
    return python_matmul


def compare(sides: dict, use, workloads: dict, n: int, rounds: int) -> None:
    """`embed` on each workload with each side in turn (`use(side)` switches), paired rounds; the first side is the
    baseline of the speed-up."""
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(Path(tmp), layers=12, seed=0)
        m = ro.load(tmp, dtype="int8")
    a, b = sides

    def run(side, texts):
        use(side)
        return m.embed(texts, pooling="mean", normalize=False)

    print(f"\n| workload | {a} | {b} | speed-up (median of {rounds} rounds, range) | max diff |\n"
          "|---|---:|---:|---:|---:|")
    for name, (lo, hi, count) in workloads.items():
        texts = make_texts(m, count or n, lo, hi, seed=1)
        calls = 50 if count == 1 else 1
        out = {side: run(side, texts) for side in sides}  # compiles each side's variants before timing
        med, ratios = paired({side: (lambda side=side, t=texts, c=calls: [run(side, t) for _ in range(c)])
                              for side in sides}, rounds)
        unit, tokens = ("ms", 0) if count == 1 else ("tok/s", sum(map(len, m.tokenize(texts))))
        value = {side: med[side] / calls * 1e3 if count == 1 else tokens / med[side] for side in sides}
        print(f"| {name} | {value[a]:,.2f} {unit} | {value[b]:,.2f} {unit} | "
              f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{abs(out[a] - out[b]).max():.1e} |")


def operator(n: int, rounds: int) -> None:
    matmuls = {"Python custom op (ctypes)": through_python(), "operator": amx.matmul}
    quantize._LAYER_STEP = quantize._jit({"cpp_wrapper": True})  # amx.matmul is read when the layer is traced

    def use(side):
        amx.matmul = matmuls[side]  # each side compiles its own variants

    try:
        compare(matmuls, use, {"batch 1 x 16 (x 50 calls)": (16, 16, 1), "short 8-64": (8, 64, None),
                               "long 256": (256, 256, max(8, n // 16))}, n, rounds)
    finally:
        amx.matmul = matmuls["operator"]
        quantize._LAYER_STEP = None


def ahead_of_time(n: int, rounds: int) -> None:
    steps = {"torch.compile": quantize._jit({"cpp_wrapper": True}),
             "AOTInductor": AotStep(fallback=quantize._int8_layer)}

    def use(side):
        quantize._LAYER_STEP = steps[side]  # Int8Layer.forward asks for it at every call

    try:
        compare(steps, use, {"batch 1 x 16 (x 50 calls)": (16, 16, 1), "short 8-64": (8, 64, None),
                             "mixed 8-128": (8, 128, None), "long 256": (256, 256, max(8, n // 16))}, n, rounds)
    finally:
        quantize._LAYER_STEP = None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel-base", default="923e572", help="git revision of the kernel to compare against")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--n", type=int, default=128, help="texts per workload (long: n / 16)")
    ap.add_argument("--op", action="store_true", help="only the operator against the Python custom op")
    ap.add_argument("--aot", action="store_true", help="only the layer compiled ahead of time against torch.compile's")
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    if args.aot:
        ahead_of_time(args.n, args.rounds)
        return 0
    if args.op:
        if not amx.available():
            print("no AMX int8 here (or no C++ compiler): nothing to compare")
            return 1
        operator(args.n, args.rounds)
        return 0
    if amx.available():
        kernels(args.kernel_base, args.rounds)
    else:
        print("no AMX int8 here (or no C compiler): kernel comparison skipped")
    attention(args.n, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
