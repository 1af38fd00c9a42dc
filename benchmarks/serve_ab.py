"""A/B two `robertaops serve` builds or settings on short inputs, interleaved with the raw engine, in one process.

This machine's speed drifts by up to ~30% within minutes, more than most server changes are worth, so one long run
of each side cannot tell them apart. Here both servers run at once (idle in turn) and every round measures the raw
engine, then A and B back to back (alternating which goes first) for --seconds each, closed loop at --concurrency.
It prints each round and the medians of B/A and of served/raw (against that round's raw run).

A runs the code at git ref --base (checked out into a temporary worktree) or, without --base, this checkout;
B always runs this checkout. --env-a / --env-b add environment variables to one side, e.g. to compare settings on
the same code: --env-a ROBERTAOPS_GIL_SWITCH_INTERVAL=0.005.

Run: python benchmarks/serve_ab.py [--base REF] [--rounds 8] [--seconds 6] [--concurrency 128]
     [--env-a K=V,...] [--env-b K=V,...] [--model PATH] [--client wrk]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import load  # benchmarks/load.py: inputs, server start, the closed-loop client

import robertaops as ro

ROOT = Path(__file__).resolve().parents[1]


def thread_seconds(pid: int) -> float:
    """CPU seconds used so far by the process's main thread (the server's event loop)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(env: dict[str, str], model: str | None) -> tuple[subprocess.Popen, int]:
    port = load.free_port()
    cmd = [sys.executable, "-m", "robertaops.cli", "serve", "--port", str(port)] + (["--model", model] if model else [])
    return load.start(cmd, port, "/health/ready", env=env), port


def parse_env(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split(",") if kv)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", help="git ref for side A (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--env-a", default="")
    ap.add_argument("--env-b", default="")
    ap.add_argument("--model", help="served model (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--client", choices=["python", "wrk"], default="python", help="the closed-loop client (load.py)")
    args = ap.parse_args()

    worktree = None
    env_a, env_b = {**os.environ, **parse_env(args.env_a)}, {**os.environ, **parse_env(args.env_b)}
    if args.base:
        worktree = tempfile.mkdtemp(prefix="robertaops-ab-")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", worktree, args.base], check=True)
        env_a["PYTHONPATH"] = str(Path(worktree) / "src")  # ahead of the editable install of this checkout
    m = ro.load(args.model) if args.model else ro.load()
    m.warm_up()
    texts = load.make_inputs(m, 2000, 14, 18, seed=0)
    counts = [len(ids) for ids in m.tokenize(texts)]
    servers = {"A": start_server(env_a, args.model), "B": start_server(env_b, args.model)}
    print(f"A: {args.base or 'this checkout'} {args.env_a}; B: this checkout {args.env_b}; "
          f"{args.rounds} rounds of {args.seconds:g} s, c={args.concurrency}, {args.client} client", flush=True)
    tps: dict[str, list[float]] = {"A": [], "B": [], "raw": []}
    loop_us: dict[str, list[float]] = {"A": [], "B": []}
    try:
        for _, port in servers.values():
            load.closed_loop_with(args.client, port, texts, counts, args.concurrency, 3)  # warm both
        for r in range(args.rounds):
            raw = load.raw_engine(m, texts, counts)
            tps["raw"].append(raw)
            line = f"round {r}: raw {raw:7.0f} tok/s"
            for side in ("AB" if r % 2 == 0 else "BA"):
                proc, port = servers[side]
                time.sleep(0.5)  # the other server's threads settle
                before = thread_seconds(proc.pid)
                stats = load.closed_loop_with(args.client, port, texts, counts, args.concurrency, args.seconds)
                loop_us[side].append((thread_seconds(proc.pid) - before) / (stats.rps * stats.elapsed) * 1e6)
                tps[side].append(stats.tps)
                line += (f"   {side} {stats.tps:7.0f} ({stats.tps / raw:.2f} of raw, "
                         f"loop {loop_us[side][-1]:.0f} us/req)")
            print(line, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)
        if worktree:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", worktree], check=False)
    ratios = [b / a for a, b in zip(tps["A"], tps["B"], strict=True)]
    print(f"B/A per round: {' '.join(f'{x:.3f}' for x in ratios)}   median {statistics.median(ratios):.3f}")
    for side in "AB":
        share = statistics.median(s / raw for s, raw in zip(tps[side], tps["raw"], strict=True))
        print(f"{side}: served/raw median {share:.3f}, event-loop CPU median {statistics.median(loop_us[side]):.0f} "
              "us per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
