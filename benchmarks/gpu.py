"""The whole GPU comparison in one call (issue 7): robertaops vs transformers on random roberta-base weights.

GPU time is scarce, so this one script does everything in well under 8 minutes on an H100/H200 and prints one JSON
line per measurement plus a summary table:
- the bf16 GEMM ceiling of this GPU (a large bf16 matmul), turned into a tokens/s ceiling at ~171 MFLOP per token;
- "mixed": N texts of 8-128 tokens (uniform, real prose ids); transformers `RobertaModel` (sdpa, bf16) in batches
  of --hf-batch in arrival order, and sorted by length; robertaops `m.embed` (bf16, token-budget packing);
- "long": texts of 510 tokens, both sides in batches of 64 / the budget;
- parity: cosine between the two sides' mean-pooled embeddings (bf16 on both sides).
Throughput counts real (non-pad) tokens per second, tokenization excluded for transformers (done beforehand, in its
favour) and included for robertaops. Targets (issue 7): mixed >= 2.2x transformers sdpa bf16 in arrival order;
long >= 70% of the GEMM ceiling.

Run on the GPU machine: `python benchmarks/gpu.py` (defaults sized for an H100/H200).
Smoke test on a CPU (what CI-less checks use): `python benchmarks/gpu.py --device cpu --layers 2 --n 64 --long-n 8`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_checkpoint, make_texts  # noqa: E402 - same weights and texts as the CPU benchmark

import robertaops as ro  # noqa: E402
from robertaops.model.heads import pool  # noqa: E402

FLOP_PER_TOKEN = 171e6  # roberta-base forward, per token (DESIGN.md "Performance model")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_ceiling(device: str, n: int) -> float:
    """Measured bf16 matmul FLOP/s on a square n x n problem (best of 10)."""
    dtype = torch.bfloat16
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def hf_run(hf, ids: list[list[int]], batch: int, device: str, order: list[int]) -> tuple[float, list]:
    """transformers on pre-tokenized ids, batches of `batch` in `order`; (seconds, pooled rows in input order)."""
    out: list = [None] * len(ids)
    sync(device)
    t = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            chunk = order[s:s + batch]
            width = max(len(ids[i]) for i in chunk)
            x = torch.full((len(chunk), width), 1, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                x[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
            hidden = hf(input_ids=x, attention_mask=mask).last_hidden_state  # (B, T, H)
            pooled = pool(hidden, mask, "mean").float().cpu()
            for r, i in enumerate(chunk):
                out[i] = pooled[r]
    sync(device)
    return time.perf_counter() - t, out


def ours_run(m, texts: list[str], device: str) -> tuple[float, np.ndarray]:
    sync(device)
    t = time.perf_counter()
    vectors = m.embed(texts, pooling="mean", normalize=False)
    sync(device)
    return time.perf_counter() - t, vectors


def ids_only_run(m, ids: list[list[int]], device: str) -> tuple[float, np.ndarray]:
    """robertaops' forward on already-tokenized inputs (what transformers is given): the engine without the host's
    tokenization."""
    sync(device)
    t = time.perf_counter()
    vectors = m.runner.forward_ids(ids, lambda hidden, mask: pool(hidden, mask, "mean").float()).numpy()
    sync(device)
    return time.perf_counter() - t, vectors


def workload(name, models, hf, texts, args, results) -> None:
    """Every side on the same texts, interleaved, best of --repeats; `models` maps a label to a robertaops model."""
    first = next(iter(models.values()))
    ids = first.tokenize(texts)
    tokens = sum(map(len, ids))
    t = time.perf_counter()
    first.tokenizer.ids_fast(texts)
    tokenize_s = time.perf_counter() - t  # host-side share of robertaops' time (transformers is given its ids)
    arrival = list(range(len(texts)))
    by_length = sorted(arrival, key=lambda i: len(ids[i]))
    hf_run(hf, ids, args.hf_batch, args.device, arrival[: args.hf_batch * 2])  # warm-up
    sides = {"hf_arrival": lambda: hf_run(hf, ids, args.hf_batch, args.device, arrival),
             "hf_sorted": lambda: hf_run(hf, ids, args.hf_batch, args.device, by_length)}
    for label, m in models.items():
        ours_run(m, texts[: args.hf_batch * 4], args.device)  # warm-up (allocator, kernels)
        sides[label] = lambda m=m: ours_run(m, texts, args.device)
    label, m = next(iter(models.items()))
    sides[label + "_pretokenized"] = lambda m=m: ids_only_run(m, ids, args.device)  # the device side alone
    rows = {}
    for _ in range(args.repeats):
        for label, fn in sides.items():
            seconds, out = fn()
            if label not in rows or seconds < rows[label][0]:
                rows[label] = (seconds, out)
    ref = torch.stack(rows["hf_arrival"][1]).double()
    for label, (seconds, out) in rows.items():
        line = {"workload": name, "side": label, "tokens": tokens, "seconds": round(seconds, 4),
                "tok_per_s": round(tokens / seconds, 1)}
        if label.startswith("robertaops"):
            ours = torch.from_numpy(np.asarray(out)).double()
            line["min_cosine_vs_hf"] = round(torch.nn.functional.cosine_similarity(ref, ours).min().item(), 6)
            line["tokenize_s"] = round(tokenize_s, 4)
        results.append(line)
        print(json.dumps(line), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--n", type=int, default=40000, help="mixed-length texts")
    ap.add_argument("--long-n", type=int, default=4096, help="510-token texts")
    ap.add_argument("--hf-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--gemm-n", type=int, default=8192)
    ap.add_argument("--budgets", type=lambda v: [int(x) for x in v.split(",")], default=[16384, 65536],
                    help="robertaops token budgets per forward pass to compare")
    ap.add_argument("--json", help="also write every measurement to this file")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a smoke test", file=sys.stderr)
        return 2
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name() if
                      args.device.startswith("cuda") else args.device, "layers": args.layers}), flush=True)
    ceiling = gemm_ceiling(args.device, args.gemm_n if args.device.startswith("cuda") else 512)
    print(json.dumps({"gemm_bf16_flops": round(ceiling / 1e12, 2),
                      "ceiling_tok_per_s": round(ceiling / FLOP_PER_TOKEN * 12 / args.layers)}), flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        hf = make_checkpoint(Path(tmp), args.layers, seed=0).to(args.device, torch.bfloat16).eval()
        models = {f"robertaops_{b // 1024}k": ro.load(tmp, device=args.device, dtype="bfloat16", max_length=512,
                                                      max_batch_tokens=b) for b in args.budgets}
        workload("mixed 8-128", models, hf, make_texts(next(iter(models.values())), args.n, 8, 128, seed=1), args,
                 results)
        workload("long 510", models, hf, make_texts(next(iter(models.values())), args.long_n, 510, 510, seed=2),
                 args, results)
    if args.json:
        Path(args.json).write_text(json.dumps({"gemm_bf16_flops": ceiling, "results": results}, indent=1) + "\n")
    ceiling_tps = ceiling / FLOP_PER_TOKEN * 12 / args.layers
    for w in ("mixed 8-128", "long 510"):
        by = {r["side"]: r["tok_per_s"] for r in results if r["workload"] == w}
        best = max((k for k in by if k.startswith("robertaops") and not k.endswith("_pretokenized")), key=by.get)
        print(f"{w}: {best} {by[best]:,.0f} tok/s = {by[best] / by['hf_arrival']:.2f}x hf arrival "
              f"({by['hf_arrival']:,.0f}), {by[best] / by['hf_sorted']:.2f}x hf sorted ({by['hf_sorted']:,.0f}), "
              f"{by[best] / ceiling_tps:.0%} of the bf16 GEMM ceiling ({ceiling_tps:,.0f} tok/s)")
    print("targets: mixed >= 2.2x hf arrival; long 510 >= 70% of the ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
