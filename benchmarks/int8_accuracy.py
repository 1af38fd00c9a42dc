"""How close the int8 path's embeddings stay to fp32, by input length, and which Linears cost the most.

Model: the default (all-MiniLM-L6-v2), or --model. Cosine of each int8 vector to its fp32 vector (normalized, mean
pooling) on four sets: SST-2 dev sentences, inputs of 1-3 words, and 60- and 400-character prose (cut from
pretrain-corpus part-00). Then the 1-3-word set again with only one kind of Linear in int8 (the rest fp32, run
eagerly through the modules, without smoothing) and with one whole layer in int8: where the error came from
before model/smoothing.py.

Run: python benchmarks/int8_accuracy.py [--model PATH]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
from pathlib import Path

import numpy as np

import robertaops as ro
from robertaops.model.quantize import Int8Linear

DATA = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
KINDS = {"Q, K, V": ("attn", ("query", "key", "value")), "attention out": ("attn", ("out",)),
         "FFN in": (None, ("ffn_in",)), "FFN out": (None, ("ffn_out",))}


def text_sets() -> dict[str, list[str]]:
    with open(DATA / "sst2" / "dev.tsv", encoding="utf-8") as f:
        sst = [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]
    with gzip.open(DATA / "pretrain-corpus" / "part-00.txt.gz", "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if len(line.strip()) > 400][:300]
    return {"SST-2 dev sentences": sst,
            "1-3 words": [" ".join(line.split()[:k]) for line, k in zip(lines, [1, 2, 3] * 100, strict=True)],
            "prose, 60 characters": [line[:60] for line in lines],
            "prose, 400 characters": [line[:400] for line in lines]}


def row(name: str, cos: np.ndarray) -> str:
    return (f"| {name} | {len(cos)} | {cos.min():.4f} | {np.percentile(cos, 1):.4f} | {cos.mean():.4f} | "
            f"{(cos < 0.99).mean() * 100:.1f}% |")


def partly_int8(model: str | None, kinds: set[str], layer: int | None = None):
    """The fp32 model with the chosen Linears swapped for Int8Linear (layers run eagerly, module by module)."""
    m = ro.load(model)
    for i, block in enumerate(m.runner.model.encoder.layers):
        for kind, (owner, names) in KINDS.items():
            if kind in kinds or layer == i:
                parent = block.attn if owner else block
                for n in names:
                    setattr(parent, n, Int8Linear.from_linear(getattr(parent, n)))
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a model path (default: the default model)")
    args = ap.parse_args()
    fp32, int8 = ro.load(args.model), ro.load(args.model, dtype="int8")
    sets = text_sets()
    refs = {k: fp32.embed(v) for k, v in sets.items()}
    head = "| {} | texts | min cosine | 1st percentile | mean | below 0.99 |\n|---|---:|---:|---:|---:|---:|"
    print(head.format("int8 (every Linear, compiled layers) vs fp32"))
    for name, texts in sets.items():
        print(row(name, (int8.embed(texts) * refs[name]).sum(1)))
    short, ref = sets["1-3 words"], refs["1-3 words"]
    print("\n" + head.format("1-3 words, only these Linears in int8 (not smoothed)"))
    for kind in KINDS:
        print(row(kind, (partly_int8(args.model, {kind}).embed(short) * ref).sum(1)))
    for i in range(fp32.config.num_hidden_layers):
        print(row(f"layer {i}, all four", (partly_int8(args.model, set(), layer=i).embed(short) * ref).sum(1)))


if __name__ == "__main__":
    main()
