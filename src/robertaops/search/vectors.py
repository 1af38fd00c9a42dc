"""The FAISS index over chunk embeddings, and the choice of index type by corpus size.

Vectors are L2-normalised, so inner product is cosine. Ids are the chunk ids from SQLite.

Choice by number of vectors n (`kind="auto"`), the recall trade-off measured by benchmarks/ann_recall.py:
- n <= 50,000: exact flat search. A SciFact-sized index (~10k chunks) answers in well under a millisecond, and exact
  means recall 1.0: no reason to approximate.
- 50,000 < n <= 5,000,000: "pq", a compressed scan re-ranked exactly: every vector is scanned as a 4-bit product
  code (d/2 sub-quantisers, d/2 bytes, SIMD "fast scan"), and the best K_FACTOR * k candidates are re-scored with
  the float32 vectors. Its recall does not depend on the data having structure: 0.997 recall@10 on 1M i.i.d. random
  384-d vectors (the worst case) at 4 ms a query, 16x faster than exact; trains in seconds. It cannot remove
  vectors or apply a filter inside FAISS: a delete rebuilds it from the stored embeddings (seconds), and a filtered
  query is answered exactly over the stored embeddings of the allowed chunks.
- n > 5,000,000: IVF (nlist = 4 sqrt(n), nprobe = nlist / 8), trained on a sample. Memory stays ~ the vectors
  themselves; recall depends on nprobe, the knob to raise if it is too low.
- "hnsw" (M=32, efConstruction=80, efSearch=256) only when asked for: on real, clustered embeddings it answers in
  ~0.5 ms with recall ~1.0, but on unstructured data its recall collapses (0.42 at efSearch 256 on 100k random
  vectors; 0.995 needs efSearch 4096, slower than exact), and its build takes minutes per million vectors.
`int8=True` stores 8-bit scalar-quantised codes (SQ8) instead of float32 (for "pq", the re-ranking codes): 4x less
memory, slightly lower recall.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, choices

KINDS = ("auto", "flat", "pq", "hnsw", "ivf")
FLAT_MAX = 50_000
PQ_MAX = 5_000_000
HNSW_M, EF_CONSTRUCTION, EF_SEARCH = 32, 80, 256
K_FACTOR = 64  # "pq" re-ranks 64 k candidates: recall@10 0.983 at 32, 0.997 at 64, 0.9995 at 128 (1M random, 384-d)


def choose(n: int, kind: str = "auto") -> str:
    if kind not in KINDS:
        raise InvalidInputError(f"unknown index kind {kind!r}; choose {choices(KINDS)}")
    if kind != "auto":
        return kind
    return "flat" if n <= FLAT_MAX else "pq" if n <= PQ_MAX else "ivf"


def build(vectors: np.ndarray, ids: np.ndarray, kind: str, int8: bool = False):
    """A FAISS index of `kind` holding `vectors` (n, d) float32 under `ids` (n,) int64."""
    import faiss

    n, d = vectors.shape
    codes = "SQ8" if int8 else "Flat"
    metric = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.index_factory(d, codes, metric))
    elif kind == "pq":
        rerank = "Refine(SQ8)" if int8 else "RFlat"
        inner = faiss.index_factory(d, f"PQ{d // 2 if d % 2 == 0 else d}x4fs,{rerank}", metric)
        train = vectors[:100_000]
        if 0 < len(train) < 1024:  # k-means wants >= 16 points per 4-bit codebook; repeats fit the few exactly
            train = np.resize(train, (1024, d))
        inner.train(np.ascontiguousarray(train))
        faiss.downcast_index(inner).k_factor = K_FACTOR
        index = faiss.IndexIDMap2(inner)
    elif kind == "hnsw":
        inner = faiss.index_factory(d, f"HNSW{HNSW_M}" + (",SQ8" if int8 else ""), metric)
        inner.hnsw.efConstruction = EF_CONSTRUCTION
        inner.hnsw.efSearch = EF_SEARCH
        if int8:
            inner.train(np.ascontiguousarray(vectors[:100_000]))  # SQ8 learns each dimension's range
        index = faiss.IndexIDMap2(inner)
    else:
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))  # >= 39 training points per list
        index = faiss.index_factory(d, f"IVF{nlist},{codes}", metric)
        train = vectors if n <= 256 * nlist else vectors[np.random.default_rng(0).choice(n, 256 * nlist, False)]
        index.train(np.ascontiguousarray(train))
        index.nprobe = max(1, nlist // 8)
    if int8 and kind == "flat":
        index.index.train(np.ascontiguousarray(vectors[: 100_000]))  # SQ8 learns each dimension's range
    if n:
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return index


def can_remove(kind: str) -> bool:
    return kind not in ("hnsw", "pq")


def can_filter(kind: str) -> bool:
    """Whether FAISS applies an id filter inside the search (the fast-scan codes of "pq" ignore it)."""
    return kind != "pq"


def remove(index, ids: np.ndarray) -> None:
    import faiss

    index.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64)))


def add(index, vectors: np.ndarray, ids: np.ndarray) -> None:
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))


def search(index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (q, k); missing results have id -1. `allowed` restricts the search to those ids.

    A few queries run on one OpenMP thread: FAISS parallelises over queries, so a single query gains nothing from
    more threads, and waking them on a busy machine cost 115 ms instead of 0.3 ms (10k x 384 flat, 2 shared cores).
    OpenMP's thread count is per calling thread, so this does not change other threads' searches or builds."""
    import faiss

    if len(queries) <= 4 and faiss.omp_get_max_threads() > 1:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return search(index, queries, k, allowed)
        finally:
            faiss.omp_set_num_threads(before)
    k = max(1, min(k, index.ntotal))
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if allowed is None:
        return index.search(queries, k)
    selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(EF_SEARCH, k))
    elif isinstance(inner, faiss.IndexIVF):
        params = faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
    else:
        params = faiss.SearchParameters(sel=selector)
    return index.search(queries, k, params=params)


def save(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load(path: Path):
    import faiss

    index = faiss.read_index(str(path))
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = EF_SEARCH  # efSearch is not stored in the file
    elif isinstance(inner, faiss.IndexRefine):
        inner.k_factor = K_FACTOR
    return index


def kind_of(index) -> str:
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if isinstance(inner, faiss.IndexRefine):
        return "pq"
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "ivf" if isinstance(inner, faiss.IndexIVF) else "flat"
