"""`robertaops batch embed --engine local` on N generated short rows: rows/s and peak RSS of the embedding process.

    .venv/bin/python benchmarks/batch_embed.py --rows 100000 [--rows 20000 ...]

Rows are short synthetic sentences (6-14 words from a fixed vocabulary), written to Parquet first. Each size runs
the real CLI in a child process; its peak RSS comes from getrusage(RUSAGE_CHILDREN) after it exits. Bounded memory
shows as a peak RSS that does not grow with the row count. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("the a model index search fast data vector query shard token batch river mountain quiet harbour sailor "
         "engine embedding library window stream memory bounded parquet spark worker cluster night morning").split()


def make_input(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    writer = None
    for at in range(0, rows, 50_000):
        n = min(50_000, rows - at)
        texts = [" ".join(rng.choice(WORDS, size=rng.integers(6, 15))) for _ in range(n)]
        table = pa.table({"id": np.arange(at, at + n), "text": texts})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def run_sampling_rss(cmd: list[str], every: float = 10.0) -> list[int]:
    """Run the CLI to completion, sampling its VmRSS (MB) every `every` seconds: flat samples = bounded memory."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env={**os.environ})
    samples = []
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                samples += [int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS:")]
        except FileNotFoundError:
            break
        time.sleep(every)
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}")
    return samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, action="append", help="row counts to run (repeatable)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in sorted(args.rows or [100_000]):
            src, out = Path(tmp) / f"in-{rows}.parquet", Path(tmp) / f"out-{rows}.parquet"
            make_input(src, rows)
            cmd = [str(Path(sys.executable).parent / "robertaops"), "batch", "embed", "--input", str(src), "--output",
                   str(out), "--engine", "local", "--no-progress"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t = time.perf_counter()
            samples = run_sampling_rss(cmd)
            wall = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            # RUSAGE_CHILDREN's max covers every child so far: run sizes in ascending order, and a peak that stays
            # flat as rows grow is the bounded-memory evidence
            result = {"rows": rows, "seconds": round(wall, 1), "rows_per_s": round(rows / wall, 1),
                      "peak_rss_mb": round(max(peak, before) / 1024, 1),
                      "output_mb": round(out.stat().st_size / 2**20, 1),
                      "rss_mb_samples": samples[:: max(1, len(samples) // 12)]}
            print(result, flush=True)
            results.append(result)
    print(json.dumps({"engine": "local", "runs": results}))


if __name__ == "__main__":
    main()
