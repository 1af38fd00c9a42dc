"""The Linear kernels each path runs, on roberta-base's shapes: GFLOP/s (GOP/s for int8) per kernel and token count.

- fp32 `F.linear`: what transformers (and our exact path before packing) run on the CPU: MKL's sgemm.
- fp32 / bf16 packed: `PackedLinear` (`model/packed.py`), oneDNN with the weight reordered once.
- bf16 `F.linear`: oneDNN too, reordering the weight at every call.
- int8 `_int_mm`: the int8 path's matmul (int8 x int8 -> int32), activations already quantized.

Each cell is the median of --repeats calls after a warm-up call, on one weight (it stays in cache: a whole model's
weights do not, which is what batch-1 latency pays for). Usage: python benchmarks/linear_kernels.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robertaops.model.packed import PackedLinear

SHAPES = {"QKV 768->2304": (768, 2304), "FFN in 768->3072": (768, 3072), "FFN out 3072->768": (3072, 768)}
TOKENS = (16, 256, 2048)


def median_ms(fn, arg, repeats: int) -> float:
    fn(arg)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads; GFLOP/s (int8: GOP/s), median of {args.repeats}")
    print("| shape | tokens | fp32 F.linear (MKL) | fp32 packed (oneDNN) | bf16 F.linear | bf16 packed "
          "| int8 _int_mm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (k, n) in SHAPES.items():
        fp32, bf16 = torch.nn.Linear(k, n), torch.nn.Linear(k, n).to(torch.bfloat16)
        w8 = torch.randint(-127, 128, (k, n), dtype=torch.int8)
        kernels = [(fp32, torch.float32), (PackedLinear.from_linear(fp32), torch.float32),
                   (bf16, torch.bfloat16), (PackedLinear.from_linear(bf16), torch.bfloat16),
                   (lambda x8, w8=w8: torch._int_mm(x8, w8), torch.int8)]
        for m in TOKENS:
            ops = 2 * m * k * n / 1e6  # MFLOP: per ms that is GFLOP/s
            cells = []
            for fn, dtype in kernels:
                int8 = dtype == torch.int8
                x = torch.randint(-127, 128, (m, k), dtype=dtype) if int8 else torch.randn(m, k, dtype=dtype)
                with torch.inference_mode():
                    cells.append(ops / median_ms(fn, x, args.repeats))
            print(f"| {name} | {m} | " + " | ".join(f"{c:,.0f}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
