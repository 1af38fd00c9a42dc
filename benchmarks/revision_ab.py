"""Paired A/B of the working tree against a git revision, for changes that cannot share one process.

A changed C kernel or torch operator (model/amx_int8.c registers `robertaops::amx_int8_mm` once per process) cannot
be loaded twice beside itself, so benchmarks/int8_ab.py's in-process rounds do not apply. Here two warm processes,
one per side, take turns: the driver asks each in turn (order swapped every round) to run one workload, and reports
the per-round ratios and their median, so a slow spell of this shared machine hits both sides of a round alike.

- Side "now": the working tree; side "base": `git worktree` of --base in a temporary directory (removed after).
- Both load the same random roberta-base checkpoint (throughput.py's `make_checkpoint`) with --dtype, and run
  throughput.py's workloads: short (128 texts of 8-64 tokens), mixed (8-128), long (16 x 256 tokens), each timed
  as one `embed` call (tokens per second), and b1 (one 16-token input: the median of 25 calls, in ms).
- OMP_WAIT_POLICY=PASSIVE in both: an idle side's OpenMP threads would otherwise spin for a while after each turn
  and take the cores from the side being timed. Absolute numbers are therefore a little lower than elsewhere.

Run: python benchmarks/revision_ab.py --base HEAD~1 [--dtype int8] [--workloads b1,short,long] [--rounds 12]
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

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {"short": (128, 8, 64, 2), "mixed": (128, 8, 128, 3), "long": (16, 256, 256, 1), "b1": (1, 16, 16, 5)}


def child(checkpoint: str, dtype: str) -> None:
    """One side: load, warm up, then answer each workload name read from stdin with one measurement."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from throughput import make_texts

    import robertaops as ro

    m = ro.load(checkpoint, dtype=dtype)
    texts = {k: make_texts(m, n, lo, hi, seed) for k, (n, lo, hi, seed) in WORKLOADS.items()}
    tokens = {k: sum(map(len, m.tokenize(v))) for k, v in texts.items()}
    for v in texts.values():
        m.embed(v)
    print("ready", flush=True)
    for line in sys.stdin:
        k = line.strip()
        calls = 25 if k == "b1" else 1
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            m.embed(texts[k])
            times.append(time.perf_counter() - t)
        took = statistics.median(times)
        print(took * 1e3 if k == "b1" else tokens[k] / took, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="git revision to compare the working tree against (required)")
    ap.add_argument("--dtype", default="int8")
    ap.add_argument("--workloads", default="b1,short,mixed,long")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    if not args.base:
        ap.error("--base is required")
    names = args.workloads.split(",")
    if unknown := set(names) - set(WORKLOADS):
        ap.error(f"unknown workloads {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base_tree), args.base], cwd=ROOT, check=True)
        try:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from throughput import make_checkpoint

            make_checkpoint(Path(tmp) / "model", 12, 0)
            sides = {}
            for side, tree in (("now", ROOT), ("base", base_tree)):
                env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_WAIT_POLICY="PASSIVE")
                proc = subprocess.Popen([sys.executable, __file__, "--child", str(Path(tmp) / "model"), args.dtype],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp)
                if proc.stdout.readline().strip() != "ready":
                    raise SystemExit(f"the {side} side did not start (its stderr is above)")
                sides[side] = proc
            print(f"now (working tree) against {args.base}, dtype {args.dtype}, {args.rounds} rounds")
            for k in names:
                ratios, values = [], {"now": [], "base": []}
                for r in range(args.rounds):
                    got = {}
                    for side in ("now", "base") if r % 2 == 0 else ("base", "now"):
                        sides[side].stdin.write(k + "\n")
                        sides[side].stdin.flush()
                        got[side] = float(sides[side].stdout.readline())
                        values[side].append(got[side])
                    # speed of now over base: tokens per second divide one way, milliseconds the other
                    ratios.append(got["base"] / got["now"] if k == "b1" else got["now"] / got["base"])
                unit = "ms" if k == "b1" else "tok/s"
                print(f"{k}: now/base speed per round: {' '.join(f'{x:.2f}' for x in ratios)}   median "
                      f"{statistics.median(ratios):.3f}   (medians: now {statistics.median(values['now']):,.1f}, "
                      f"base {statistics.median(values['base']):,.1f} {unit})", flush=True)
            for proc in sides.values():
                proc.stdin.close()
                proc.wait()
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
