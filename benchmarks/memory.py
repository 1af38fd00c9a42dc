"""Resident memory of a loaded model: plain weights, packed for oneDNN, and packed with the plain copy dropped.

`ro.load` on the CPU packs every Linear's weight into oneDNN's blocked layout (model/packed.py) and keeps the plain
weight beside it, so fp32 inference pays the Linears' weights twice. A server only runs inference and drops the
plain copy (`Model.drop_plain_weights`). Each configuration loads the model in a fresh process and reports how much
its anonymous resident memory (RssAnon: heap and tensors, not mapped files) grew over the load and a first
`embed`, how much its peak resident memory (VmHWM) grew meanwhile, and whether the vectors equal the plain model's.

Models: all-MiniLM-L6-v2 (the default) and a random roberta-base (transformers' `RobertaConfig()` shapes, the
shared roberta tokenizer), written to a temporary directory first.
Run: `.venv/bin/python benchmarks/memory.py`
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(os.environ.get("ROBERTAOPS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CONFIGS = {"plain": {"ROBERTAOPS_PACK": "0"}, "packed": {}, "packed, plain dropped": {}}
TEXTS = ["a short input", "and a longer one, so that the batch holds some padding, as a server's batches do"]


def status_mb(field: str) -> float:
    return int(re.search(field + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def child(path: str, drop: bool) -> None:
    import ctypes
    import gc

    import robertaops as ro

    before, peak_before = status_mb("RssAnon"), status_mb("VmHWM")
    m = ro.load(path)
    freed = m.drop_plain_weights() if drop else 0
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what the server's settle_heap does once its models are up
    vectors = m.embed(TEXTS)
    print(json.dumps({"rss_mb": status_mb("RssAnon") - before, "peak_mb": status_mb("VmHWM") - peak_before,
                      "freed_mb": freed / 2**20, "vectors": vectors.tolist()}))


def random_roberta_base(directory: Path) -> Path:
    from transformers import RobertaConfig, RobertaModel

    RobertaModel(RobertaConfig(), add_pooling_layer=False).save_pretrained(directory)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(DATA / "roberta-tokenizer" / name, directory / name)
    return directory


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3] == "drop")
    from robertaops.resolve import packaged_default

    with tempfile.TemporaryDirectory() as tmp:
        models = {"all-MiniLM-L6-v2": str(packaged_default()),
                  "random roberta-base": str(random_roberta_base(Path(tmp)))}
        print("| model | weights | RssAnon growth, MB | peak RSS growth, MB | plain copies freed, MB | "
              "vectors vs plain |")
        print("|---|---|---:|---:|---:|---|")
        for name, path in models.items():
            plain = None
            for config, env in CONFIGS.items():
                mode = "drop" if "dropped" in config else "keep"
                out = subprocess.run([sys.executable, __file__, "--child", path, mode], env={**os.environ, **env},
                                     capture_output=True, text=True, check=True).stdout
                r = json.loads(out.splitlines()[-1])
                plain = plain or r["vectors"]
                diff = max(abs(a - b) for u, v in zip(plain, r["vectors"], strict=True)
                           for a, b in zip(u, v, strict=True))
                print(f"| {name} | {config} | {r['rss_mb']:,.0f} | {r['peak_mb']:,.0f} | {r['freed_mb']:,.0f} | "
                      f"max diff {diff:.1e} |",
                      flush=True)


if __name__ == "__main__":
    main()
