"""Throughput of `Model.embed` against transformers' `RobertaModel`, on the same random roberta-base weights.

What is measured
- Both sides run the exact same token ids: N texts cut from real prose (pretrain-corpus part-00) to token lengths
  uniform in [min-len, max-len] (specials included), fixed seed. The texts are tokenized once with our tokenizer
  and those ids, padded per batch, are what transformers gets.
- transformers "as users call it": `RobertaModel` in eval mode, its default attention implementation (printed),
  under `torch.inference_mode()`, batches of --hf-batch texts in arrival order (so it computes on padding), mean
  pooling over non-pad tokens. Its tokenization and padding are done before the clock starts (in its favour).
- robertaops: `m.embed(texts, pooling="mean", normalize=False)`, our tokenization included. Also reported: the same
  forward with tokenization excluded (`m.runner.run` on pre-made windows).
- Throughput is real (non-pad) tokens per second, best of --repeats full passes after one warm-up on a few batches;
  the passes are interleaved (hf, ours, ours without tokenization, bf16, then again) so a busy machine slows all
  sides alike, and the load average is printed.
  The ratio is ours / transformers'. Target at this stage (DESIGN.md "Performance model"): >= 1.6x in fp32 on this
  CPU, with embeddings equal to transformers' within 1e-4 (checked here; exit 1 if not). The bf16 figure
  (`dtype="bfloat16"`) is printed with its cosine to our fp32 embeddings.

Run: `cd /work/main && .venv/bin/python benchmarks/throughput.py` (quick smoke: `--layers 2 --n 128`); `--all` adds
the table of every path against every peer (bf16, int8, ONNX Runtime; benchmarks/perf_table.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import RobertaConfig, RobertaModel

import robertaops as ro
from robertaops.model.heads import pool
from robertaops.pipelines.runner import plan_batches

sys.path.insert(0, str(Path(__file__).resolve().parent))  # perf_table.py, next to this file

DATA = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
TOL = 1e-4


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_checkpoint(directory: Path, layers: int, seed: int) -> RobertaModel:
    """Random roberta-base-shaped weights saved HF-style, with the real roberta tokenizer files beside them."""
    cfg = RobertaConfig(
        vocab_size=50265, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12, intermediate_size=3072,
        max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        layer_norm_eps=1e-5, hidden_act="gelu",
    )
    torch.manual_seed(seed)
    hf = RobertaModel(cfg, add_pooling_layer=False).eval()
    hf.save_pretrained(directory)
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        shutil.copy(DATA / "roberta-tokenizer" / name, directory / name)
    return hf


def make_texts(m, n: int, lo: int, hi: int, seed: int) -> list[str]:
    """n texts of prose whose token counts (specials included) are uniform in [lo, hi]."""
    rng = random.Random(seed)
    with gzip.open(DATA / "pretrain-corpus" / "part-00.txt.gz", "rt", encoding="utf-8") as f:
        stream = " ".join(line.strip() for line in f if line.strip())
    span = max(2000, 6 * hi)  # characters: enough prose for `hi` tokens (~4.5 characters per token)
    starts = []
    while len(starts) < n:
        at = stream.find(". ", rng.randrange(len(stream) - 2 * span)) + 2  # start at a sentence
        if 1 < at < len(stream) - span - 1000:
            starts.append(at)
    chunks = [stream[s:s + span] for s in starts]
    content = m.tokenize(chunks, add_special_tokens=False)
    texts = []
    for ids in content:
        want = rng.randint(lo, hi)
        k = want - 2
        text = m.decode(ids[:k])
        while k > 1 and len(m.tokenize(text)) > want:  # re-tokenizing a cut can merge differently; rare
            k -= 1
            text = m.decode(ids[:k])
        texts.append(text)
    return texts


def hf_batches(ids: list[list[int]], size: int, pad: int):
    out = []
    for s in range(0, len(ids), size):
        rows = ids[s:s + size]
        width = max(map(len, rows))
        x = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            x[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        out.append((x, mask))
    return out


def run_hf(hf, batches) -> np.ndarray:
    outs = []
    with torch.inference_mode():
        for x, mask in batches:
            h = hf(input_ids=x, attention_mask=mask).last_hidden_state
            mf = mask.unsqueeze(-1).to(h.dtype)
            outs.append(((h * mf).sum(1) / mf.sum(1)).numpy())
    return np.concatenate(outs)


def run_windows(m, windows) -> list:
    """Our forward + pooling on pre-tokenized windows (what embed does after tokenizing)."""
    return m.runner.run(windows, lambda h, b: list(pool(h, b.attention_mask, "mean").float().cpu().numpy()))


def timed_rounds(fns: dict, repeats: int) -> dict:
    """Run each fn once per round, rounds interleaved (a busy neighbour then slows every side alike).

    Returns name -> (best seconds, all seconds, last output)."""
    times: dict = {k: [] for k in fns}
    outs: dict = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
    return {k: (min(v), v, outs[k]) for k, v in times.items()}


def fmt_times(times):
    return "[" + ", ".join(f"{t:.2f}" for t in times) + "] s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--min-len", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--hf-batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-tokens", type=int, default=None, help="ro.load max_batch_tokens (default: ro's own)")
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all", action="store_true", help="after the fp32 comparison, every path (bf16, int8) against "
                    "every peer (transformers, ONNX Runtime fp32/int8) on every workload: benchmarks/perf_table.py")
    args = ap.parse_args()

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    transformers.utils.logging.disable_progress_bar()
    load_kw = {} if args.batch_tokens is None else {"max_batch_tokens": args.batch_tokens}
    tmp = Path(tempfile.mkdtemp(prefix="ro-bench-"))
    try:
        hf = make_checkpoint(tmp, args.layers, args.seed)
        m = ro.load(tmp, **load_kw)
        texts = make_texts(m, args.n, args.min_len, args.max_len, args.seed)
        ids = m.tokenize(texts)
        lengths = [len(x) for x in ids]
        real = sum(lengths)
        batches = hf_batches(ids, args.hf_batch, 1)
        hf_computed = sum(x.numel() for x, _ in batches)
        windows = m.runner.windows(texts)
        groups = plan_batches([len(w) for w in windows], m.runner.max_batch_tokens)
        ro_computed = sum(len(g) * max(len(windows[i]) for i in g) for g in groups)

        print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, "
              f"python {platform.python_version()}")
        print(f"model: random roberta-base shape, {args.layers} layers; hf attention: {hf.config._attn_implementation}")
        print(f"inputs: {len(texts)} texts, tokens {min(lengths)}..{max(lengths)} (mean {real / len(texts):.1f}), "
              f"{real} real tokens")
        print(f"padding computed: hf {1 - real / hf_computed:.1%} ({hf_computed} positions in {len(batches)} batches "
              f"of {args.hf_batch}); robertaops {1 - real / ro_computed:.1%} ({len(groups)} batches, "
              f"max_batch_tokens={m.runner.max_batch_tokens})")

        mb = None if args.skip_bf16 else ro.load(tmp, dtype="bfloat16", **load_kw)
        # Warm up each side once on a few batches.
        run_hf(hf, batches[:4])
        for model in (m, mb) if mb is not None else (m,):
            model.embed(texts[:4 * args.hf_batch], pooling="mean", normalize=False)
        fns = {
            "hf": lambda: run_hf(hf, batches),
            "ro": lambda: m.embed(texts, pooling="mean", normalize=False),
            "fw": lambda: run_windows(m, windows),
        }
        if mb is not None:
            fns["bf"] = lambda: mb.embed(texts, pooling="mean", normalize=False)
        load_before = os.getloadavg()[0]
        res = timed_rounds(fns, args.repeats)
        load_after = os.getloadavg()[0]

        hf_t, hf_times, hf_out = res["hf"]
        hf_tps = real / hf_t
        print(f"hf fp32 (batches of {args.hf_batch}, arrival order): {hf_tps:.1f} tok/s  ({hf_t:.2f} s)  "
              f"repeats {fmt_times(hf_times)}")
        ro_t, ro_times, ro_out = res["ro"]
        ro_tps = real / ro_t
        diff = float(np.abs(ro_out - hf_out).max())
        print(f"robertaops fp32: {ro_tps:.1f} tok/s  ({ro_t:.2f} s)   ratio {ro_tps / hf_tps:.2f} x   "
              f"max|diff| {diff:.1e}   repeats {fmt_times(ro_times)}")
        fw_t, fw_times, _ = res["fw"]
        print(f"robertaops fp32, tokenization excluded: {real / fw_t:.1f} tok/s  ({fw_t:.2f} s)   "
              f"ratio {real / fw_t / hf_tps:.2f} x   repeats {fmt_times(fw_times)}")
        summary = {
            "layers": args.layers, "n": len(texts), "real_tokens": real, "threads": torch.get_num_threads(),
            "hf_attn": hf.config._attn_implementation, "max_batch_tokens": m.runner.max_batch_tokens,
            "hf_padding": round(1 - real / hf_computed, 4), "ro_padding": round(1 - real / ro_computed, 4),
            "hf_fp32_tok_s": round(hf_tps, 1), "ro_fp32_tok_s": round(ro_tps, 1),
            "ro_fp32_no_tokenize_tok_s": round(real / fw_t, 1), "ratio_fp32": round(ro_tps / hf_tps, 3),
            "max_abs_diff": diff, "ok": diff < TOL,
            "loadavg_1m": [round(load_before, 2), round(load_after, 2)],
        }
        if mb is not None:
            bf_t, bf_times, bf_out = res["bf"]
            cos = torch.nn.functional.cosine_similarity(
                torch.from_numpy(bf_out).double(), torch.from_numpy(ro_out).double(), dim=-1)
            print(f"robertaops bf16: {real / bf_t:.1f} tok/s  ({bf_t:.2f} s)   ratio vs hf fp32 "
                  f"{real / bf_t / hf_tps:.2f}   cosine to fp32 min {cos.min():.5f} mean {cos.mean():.5f}   "
                  f"repeats {fmt_times(bf_times)}")
            summary.update(ro_bf16_tok_s=round(real / bf_t, 1), ratio_bf16=round(real / bf_t / hf_tps, 3),
                           bf16_cos_min=round(float(cos.min()), 5), bf16_cos_mean=round(float(cos.mean()), 5))
        print(f"1-min load average before/after timing: {load_before:.2f} / {load_after:.2f} "
              f"(above ~{torch.get_num_threads()} means something else was competing for the cores)")
        if args.all:
            from perf_table import run_all

            summary["all"] = run_all(hf, tmp, lambda lo, hi, n: make_texts(m, n, lo, hi, args.seed), hf_batches,
                                     run_hf, timed_rounds, args.repeats, n=args.n)
            print(f"1-min load average after the table: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(json.dumps(summary))
    if diff >= TOL:
        print(f"FAIL: max|diff| {diff:.2e} >= {TOL}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
