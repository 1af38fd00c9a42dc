"""`python benchmarks/throughput.py --all`: every CPU path against every peer, one table, all from the same run.

Sides, all on the same random roberta-base weights and the same token ids:
- hf fp32: transformers `RobertaModel` eager fp32, batches in arrival order (what users run);
- ort fp32 / ort int8: ONNX Runtime on the same model exported to ONNX (opset 17), int8 = ORT's dynamic
  quantization (`quantize_dynamic`, QInt8 weights), batches in arrival order, 2 intra-op threads;
- ro fp32 / bf16 / int8: `m.embed` (our tokenization included) with `dtype=` float32, bfloat16, int8.
Workloads: mixed 8-128 tokens, short 8-64 in batches of 32, long (8 x 256 tokens), and batch-1 latency of a 16-token
input. Throughput is real (non-pad) tokens per second, best of --repeats interleaved rounds; latency is the median
of 50 single calls per side, the sides taking turns in blocks of 5. Accuracy: cosine of each fast path's
mean-pooled embeddings to ours in fp32 (min over inputs).
Targets (issue 7): ro fp32 >= 1.6x hf fp32 (exact); the fast path >= 6x hf fp32 and >= 1.3x ort int8, cosine >= 0.99.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

FAST = ("ro bf16", "ro int8")


def export_onnx(hf, directory: Path) -> tuple[Path, Path]:
    """(fp32 model, int8 model) ONNX files of `hf`, with dynamic batch and length."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class LastHidden(torch.nn.Module):  # transformers' forward takes keywords only in recent versions
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    fp32, int8 = directory / "model.onnx", directory / "model-int8.onnx"
    ids = torch.randint(3, 1000, (2, 16))
    axes = {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "hidden": {0: "b", 1: "t"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The wrapper in eval mode: export restores the module's mode afterwards, and a wrapper left in training
        # mode (nn.Module's default) put `hf` in training mode too, so the hf fp32 column ran with dropout on.
        torch.onnx.export(LastHidden(hf).eval(), (ids, torch.ones_like(ids)), str(fp32), input_names=list(axes)[:2],
                          output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    assert not hf.training
    return fp32, int8


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_ort(session, batches) -> np.ndarray:
    outs = []
    for x, mask in batches:
        h = session.run(None, {"input_ids": x.numpy(), "attention_mask": mask.numpy()})[0]  # (B, T, H)
        m = mask.numpy()[..., None].astype(h.dtype)
        outs.append((h * m).sum(1) / m.sum(1))
    return np.concatenate(outs)


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def run_all(hf, checkpoint: Path, texts_for, hf_batches, run_hf, timed_rounds, repeats: int,
            n: int = 1024) -> list[dict]:
    """Every side on every workload; returns one row per (workload, side) and prints the table."""
    import robertaops as ro

    models = {name: ro.load(checkpoint, dtype=dtype) for name, dtype in
              (("ro fp32", "float32"), ("ro bf16", "bfloat16"), ("ro int8", "int8"))}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_fp32, onnx_int8 = export_onnx(hf, Path(tmp))
        ort = {"ort fp32": ort_session(onnx_fp32, torch.get_num_threads()),
               "ort int8": ort_session(onnx_int8, torch.get_num_threads())}
        rows: list[dict] = []
        for workload, (lo, hi, count, batch) in {"mixed 8-128": (8, 128, n, 32), "short 8-64": (8, 64, n, 32),
                                                 "long 256": (256, 256, max(8, n // 16), 8)}.items():
            texts = texts_for(lo, hi, count)
            ids = models["ro fp32"].tokenize(texts)
            real = sum(map(len, ids))
            batches = hf_batches(ids, batch, 1)
            fns = {"hf fp32": lambda b=batches: run_hf(hf, b),
                   **{k: (lambda s=s, b=batches: run_ort(s, b)) for k, s in ort.items()},
                   **{k: (lambda m=m, t=texts: m.embed(t, pooling="mean", normalize=False)) for k, m in models.items()}}
            for fn in fns.values():  # warm-up
                fn()
            res = timed_rounds(fns, repeats)
            reference = res["ro fp32"][2]
            for side, (seconds, _, out) in res.items():
                rows.append({"workload": workload, "side": side, "tok_s": round(real / seconds, 1),
                             "cos_min": round(cosine_min(out, reference), 5)})
        texts = texts_for(16, 16, 1)
        ids = models["ro fp32"].tokenize(texts)
        single = hf_batches(ids, 1, 1)
        calls = {"hf fp32": lambda: run_hf(hf, single), **{k: (lambda s=s: run_ort(s, single)) for k, s in ort.items()},
                 **{k: (lambda m=m: m.embed(texts, pooling="mean", normalize=False)) for k, m in models.items()}}
        for fn in calls.values():
            fn()
        # Sides take turns in blocks (order reversed every other round): this machine's speed drifts within
        # minutes, so 50 calls of one side after another's put each side in a different spell (ONNX Runtime int8
        # read 5.9-14.8 ms). Single calls in turn are no better: each side's idle threads spin for a while after
        # it returns and slow the next side down (ORT int8 read 15.4 ms that way, against 6.6 in blocks). So each
        # block starts with two untimed calls.
        times = {side: [] for side in calls}
        for r in range(10):
            for side in list(calls) if r % 2 == 0 else list(calls)[::-1]:
                calls[side](), calls[side]()
                for _ in range(5):
                    t = time.perf_counter()
                    calls[side]()
                    times[side].append(time.perf_counter() - t)
        for side, ts in times.items():
            rows.append({"workload": "batch 1 x 16 (ms)", "side": side, "ms": round(statistics.median(ts) * 1e3, 2)})
    print_table(rows)
    return rows


def print_table(rows: list[dict]) -> None:
    sides = list(dict.fromkeys(r["side"] for r in rows))
    print("\n| workload | " + " | ".join(sides) + " | best fast / hf fp32 | best fast / ort int8 |")
    print("|---" * (len(sides) + 3) + "|")
    for workload in dict.fromkeys(r["workload"] for r in rows):
        by = {r["side"]: r for r in rows if r["workload"] == workload}
        if workload.endswith("(ms)"):
            cells = [f"{by[s]['ms']:.2f}" for s in sides]
            best = min(by[s]["ms"] for s in FAST)
            ratios = [by["hf fp32"]["ms"] / best, by["ort int8"]["ms"] / best]
        else:
            cells = [f"{by[s]['tok_s']:,.0f}" + (f" (cos {by[s]['cos_min']:.4f})" if s in (*FAST, "ort int8") else "")
                     for s in sides]
            best = max(by[s]["tok_s"] for s in FAST)
            ratios = [best / by["hf fp32"]["tok_s"], best / by["ort int8"]["tok_s"]]
        print(f"| {workload} | " + " | ".join(cells) + f" | {ratios[0]:.2f}x | {ratios[1]:.2f}x |")
