"""What an int8 server costs to start, and what int8 is worth without a C++ compiler (docs/serving.md, "int8 in
production").

1. `robertaops serve --dtype int8` (the default model) until /health/ready answers, three ways: with an empty kernel
   cache (a machine's first start: it builds the int8 layers' libraries and the AMX kernel), with that cache filled
   (every later start), and with no C++ compiler (CXX and CC pointing nowhere: the layers run eagerly). Each server
   then answers one /embed, and /info says what runs its layers.
2. The raw engine's short-input throughput (`embed` of 512 texts of 8-64 tokens, 2 threads) with and without a
   compiler, each in its own process (what is compiled is decided once per process), alternating, --rounds times.

Run: python benchmarks/int8_startup.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import free_port, start  # noqa: E402
from throughput import cpu_name  # noqa: E402

NO_COMPILER = {"CXX": "/nonexistent/g++", "CC": "/nonexistent/gcc"}
RAW = """
import statistics, sys, time, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {bench!r})
from throughput import make_texts
import robertaops as ro
m = ro.load(dtype="int8")
texts = make_texts(m, 512, 8, 64, seed=2)
tokens = sum(map(len, m.tokenize(texts)))
m.warm_up()
m.embed(texts)
times = []
for _ in range(4):
    t = time.perf_counter()
    m.embed(texts)
    times.append(time.perf_counter() - t)
print(m.matmul, m.int8_layer, round(tokens / statistics.median(times)))
"""


def serve(label: str, env: dict[str, str]) -> None:
    port, started = free_port(), time.perf_counter()
    server = start([sys.executable, "-m", "robertaops.cli", "serve", "--port", str(port), "--dtype", "int8"],
                   port, "/health/ready", timeout=900, env={**os.environ, **env})
    ready = time.perf_counter() - started
    try:
        status = httpx.post(f"http://127.0.0.1:{port}/embed", json={"inputs": ["warm kernels"]}, timeout=60).status_code
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=10).json()
    finally:
        server.terminate()
        server.wait(30)
    print(f"| {label} | {ready:.1f} s | {status} | {info['matmul']} | {info['int8_layer']} |", flush=True)


def raw(env: dict[str, str]) -> str:
    code = RAW.format(bench=str(Path(__file__).resolve().parent))
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return f"{int(out[-1]):,} tok/s ({out[0]}, {out[1]})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; model all-MiniLM-L6-v2 int8")
    print("| start | ready after | first /embed | matmul | int8_layer |\n|---|---:|---:|---|---|")
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as bare:
        serve("empty kernel cache (first start on a machine)", {"ROBERTAOPS_HOME": home})
        serve("kernel cache filled (later starts)", {"ROBERTAOPS_HOME": home})
        serve("no C++ compiler", {"ROBERTAOPS_HOME": bare, **NO_COMPILER})
        print("\n| round | raw engine, short inputs: compiler | no C++ compiler |\n|---:|---|---|")
        for r in range(args.rounds):
            print(f"| {r} | {raw({'ROBERTAOPS_HOME': home})} | {raw({'ROBERTAOPS_HOME': bare, **NO_COMPILER})} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
