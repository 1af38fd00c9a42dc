"""SciFact retrieval quality and query latency: robertaops search vs sentence-transformers + exact cosine.

    .venv/bin/python benchmarks/search_quality.py [--data DIR] [--index /tmp/scifact-index]

1. Builds (or reuses) a robertaops index over SciFact's corpus with the default model (all-MiniLM-L6-v2), chunked
   with the engine's windows (256 tokens, stride 32).
2. The oracle: sentence-transformers encodes the same texts (title + " " + text, truncated at 256 tokens as it does)
   and ranks by exact cosine. Our "first chunk" run ranks by the stored embeddings of each document's first window
   only (what truncation sees), so it must equal the oracle; "chunked" is the index's real dense mode (best chunk).
3. BM25 (lexical), and hybrid: fusion parameters are tuned on SciFact's TRAIN queries and reported on TEST.
4. Query latency with the query vector given (embedding excluded), p50/p99 over the test queries.
The last line of stdout is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def st_encode(cache: str, docs: list, query_texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """sentence-transformers embeddings of title + " " + text (and of the queries), cached in `cache`."""
    qcache = cache.replace(".npy", "-queries.npy")
    if Path(cache).exists() and Path(qcache).exists():
        return np.load(cache), np.load(qcache)
    from sentence_transformers import SentenceTransformer

    from robertaops.resolve import packaged_default

    st = SentenceTransformer(str(packaged_default()), device="cpu")
    t = time.perf_counter()
    emb = st.encode([d.content for d in docs], batch_size=32, normalize_embeddings=True, show_progress_bar=True,
                    convert_to_numpy=True)
    print(f"sentence-transformers encode: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    q = st.encode(query_texts, normalize_embeddings=True, convert_to_numpy=True)
    np.save(qcache, q)
    np.save(cache + ".tmp.npy", emb)
    os.replace(cache + ".tmp.npy", cache)  # written last: its presence means both files are complete
    return emb, q


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get("ROBERTAOPS_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--index", default="/tmp/scifact-index")
    ap.add_argument("--st-cache", default="/tmp/scifact-st.npy")
    ap.add_argument("--st-only", action="store_true", help="only encode with sentence-transformers into --st-cache "
                    "(run beside a build to use both cores' share)")
    ap.add_argument("--st-sample", type=int, default=0, help="encode only this many random documents with "
                    "sentence-transformers (0 = all): a parity check of the embeddings, not a full oracle run")
    args = ap.parse_args()
    root = Path(args.data) / "retrieval" / "scifact"

    import robertaops as ro
    from robertaops.search import writer
    from robertaops.search.evaluate import evaluate
    from robertaops.search.index import Index
    from robertaops.search.sources import read_docs, read_qrels, read_queries

    queries = read_queries(root / "queries.jsonl")
    splits = {s: read_qrels(root / "qrels" / f"{s}.tsv") for s in ("train", "test")}
    qids = sorted(set(splits["train"]) | set(splits["test"]))
    all_docs = [d for b in read_docs(root / "corpus.jsonl") for d in b]
    if args.st_sample:
        picks = sorted(np.random.default_rng(0).choice(len(all_docs), args.st_sample, replace=False).tolist())
        all_docs = [all_docs[i] for i in picks]
        args.st_cache = args.st_cache.replace(".npy", f"-sample{args.st_sample}.npy")
    if args.st_only:
        st_encode(args.st_cache, all_docs, [queries[q] for q in qids])
        return
    m = ro.load()
    index_dir = Path(args.index)
    if not (index_dir / "CURRENT").exists():
        t = time.perf_counter()
        print(writer.build(index_dir, read_docs(root / "corpus.jsonl"), m, None, progress=True), file=sys.stderr)
        print(f"index build: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    ix = Index.open(index_dir)
    qvec = dict(zip(qids, m.embed([queries[q] for q in qids]), strict=True))
    out: dict = {"model": m.name, "index": ix.info()["index"], "counts": ix.manifest["counts"]}

    # -- the oracle: sentence-transformers + exact cosine --------------------------------------------------------
    doc_ids = [d.id for d in all_docs]
    st_emb, st_q = st_encode(args.st_cache, all_docs, [queries[q] for q in qids])
    out["query_embedding_max_abs_diff_vs_st"] = float(np.abs(st_q - np.stack([qvec[q] for q in qids])).max())

    def exact(emb: np.ndarray, ids: list[str], split: str) -> dict:
        res = {}
        for q in splits[split]:
            scores = emb @ qvec[q]
            top = np.argsort(-scores)[:100]
            res[q] = [ids[i] for i in top]
        return evaluate(res, splits[split])

    if not args.st_sample:
        out["st_exact_cosine"] = exact(st_emb, doc_ids, "test")
    # each document's first window, from the index's own stored embeddings (no re-embedding)
    emb = np.load(ix.gen / "embeddings.npy")
    chunk_ids = np.load(ix.gen / "ids.npy")
    first = {}
    where = ix.store.chunk_docs(chunk_ids.tolist())
    rows = ix.store.docs(sorted({d for d, _, _ in where.values()}))
    for row, cid in enumerate(chunk_ids.tolist()):
        doc = where[cid][0]
        first.setdefault(rows[doc]["id"], row)
    fid = list(first)
    out["ours_first_chunk_exact"] = exact(emb[[first[i] for i in fid]], fid, "test")
    ours = emb[[first[i] for i in doc_ids]]  # the oracle's documents (all, or the sample), in its order
    out["doc_embedding_vs_st"] = {"documents": len(doc_ids), "max_abs_diff": float(np.abs(ours - st_emb).max()),
                                  "min_cosine": float((ours * st_emb).sum(1).min())}

    def run(split: str, **kw) -> dict:
        res = {q: [h["id"] for h in ix.search(queries[q], vector=qvec[q], k=100, **kw)] for q in splits[split]}
        return evaluate(res, splits[split])

    out["ours_dense_chunked"] = run("test", mode="dense")
    out["bm25"] = run("test", mode="lexical")
    out["hybrid_rrf_k60_untuned"] = run("test", mode="hybrid", fusion="rrf", rrf_k=60)
    grid = [dict(fusion="rrf", rrf_k=k) for k in (5, 10, 20, 40, 60, 100)] + \
           [dict(fusion="weighted", alpha=a / 10) for a in range(1, 10)]
    train = [(run("train", mode="hybrid", **g)["ndcg@10"], i) for i, g in enumerate(grid)]
    best = grid[max(train)[1]]
    out["hybrid_tuning_on_train"] = {"grid": [{**g, "train_ndcg@10": s} for (s, _), g in zip(train, grid,
                                                                                                   strict=True)],
                                     "chosen": best}
    out["hybrid_tuned_test"] = run("test", mode="hybrid", **best)

    # -- latency: the query vector given, so the embedding is excluded --------------------------------------------
    for mode in ("dense", "lexical", "hybrid"):
        times = []
        for q in splits["test"]:
            t = time.perf_counter()
            ix.search(queries[q], vector=qvec[q], k=10, mode=mode, **(best if mode == "hybrid" else {}))
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out[f"latency_ms_{mode}"] = {"p50": round(statistics.median(times), 3),
                                     "p99": round(times[int(0.99 * (len(times) - 1))], 3)}
    shown = ("st_exact_cosine", "ours_first_chunk_exact", "ours_dense_chunked", "bm25", "hybrid_rrf_k60_untuned",
             "hybrid_tuned_test")
    for key in [k for k in shown if k in out]:
        print(f"{key:26s} " + " ".join(f"{k}={v}" for k, v in out[key].items()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
