"""ANN recall@10 vs exact search on random unit vectors, with build time, memory and per-query latency.

    .venv/bin/python benchmarks/ann_recall.py --n 1000000 --kind pq --ef 16,32,64,128

Vectors and queries are i.i.d. Gaussian, L2-normalised, 384-d (the default model's dimension): the hardest case
for an ANN index (no cluster structure to exploit), so real embeddings do at least as well. The index is built by
the same code the search index uses (search/vectors.py). Ground truth: exact inner product (faiss IndexFlatIP).
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--kind", default="pq", choices=["pq", "hnsw", "ivf", "flat"])
    ap.add_argument("--ef", default="128,256,512", help="values to try: HNSW efSearch, IVF nprobe or pq "
                    "re-ranking factor (candidates = factor x k)")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--embeddings", help="real vectors instead of random ones: an (n, d) .npy (e.g. a search index's "
                    "embeddings.npy); --queries of them are held out as queries")
    args = ap.parse_args()



    rng = np.random.default_rng(0)
    if args.embeddings:
        real = np.load(args.embeddings).astype(np.float32)
        held = rng.choice(len(real), args.queries, replace=False)
        queries = real[held]
        base = np.delete(real, held, axis=0)
        args.n, args.d = base.shape
    else:
        base, queries = random_unit(rng, args.n, args.d, args.queries)
    run(args, base, queries)


def random_unit(rng, n: int, d: int, nq: int) -> tuple[np.ndarray, np.ndarray]:
    base = np.empty((n, d), dtype=np.float32)
    for at in range(0, n, 100_000):  # in blocks: no float64 copy of the whole array
        block = rng.standard_normal((min(100_000, n - at), d), dtype=np.float32)
        base[at : at + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    queries = rng.standard_normal((nq, d), dtype=np.float32)
    return base, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def run(args, base: np.ndarray, queries: np.ndarray) -> None:
    import faiss

    from robertaops.search import vectors

    t = time.perf_counter()
    exact = faiss.IndexFlatIP(args.d)
    exact.add(base)
    _, truth = exact.search(queries, 10)
    exact_s = time.perf_counter() - t
    exact_ms = []
    for q in queries[:50]:  # the exact peer, one query at a time like the runs below
        t = time.perf_counter()
        vectors.search(exact, q[None, :], 10)
        exact_ms.append((time.perf_counter() - t) * 1000)
    del exact

    before = rss_mb()
    t = time.perf_counter()
    index = vectors.build(base, np.arange(args.n, dtype=np.int64), args.kind, args.int8)
    build_s = time.perf_counter() - t
    index_mb = len(faiss.serialize_index(index)) / 2**20
    out = {"data": args.embeddings or "random unit Gaussian",
           "n": args.n, "d": args.d, "kind": args.kind, "int8": args.int8, "threads": faiss.omp_get_max_threads(),
           "build_s": round(build_s, 1), "index_mb": round(index_mb, 1),
           "rss_growth_mb": round(rss_mb() - before, 1), "peak_rss_mb": resource.getrusage(
               resource.RUSAGE_SELF).ru_maxrss // 1024, "exact_search_s_all_queries": round(exact_s, 2),
           "exact_p50_ms": round(statistics.median(exact_ms), 3),
           "runs": []}
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    for value in [int(v) for v in args.ef.split(",")]:
        if args.kind == "hnsw":
            inner.hnsw.efSearch = value
        elif args.kind == "ivf":
            inner.nprobe = value
        elif args.kind == "pq":
            inner.k_factor = value
        _, found = index.search(queries, 10)
        recall = float(np.mean([len(set(f) & set(g)) / 10 for f, g in zip(found, truth, strict=True)]))
        times = []
        for q in queries[:200]:  # one query at a time, as the search index runs them (one OpenMP thread)
            t = time.perf_counter()
            vectors.search(index, q[None, :], 10)
            times.append((time.perf_counter() - t) * 1000)
        out["runs"].append({"ef_or_nprobe": value, "recall@10": round(recall, 4),
                            "p50_ms": round(statistics.median(times), 3)})
        print(f"{args.kind} {value}: recall@10 {recall:.4f}, p50 {statistics.median(times):.2f} ms", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
