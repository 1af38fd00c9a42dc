"""Reading and querying an index: `Index.open(DIR).search("query", mode="hybrid")`.

An `Index` is one committed generation (see manifest.py), opened read-only: later writes publish new generations
and never change this one, so a long-lived reader (the server) re-opens when `Index.stale()` says CURRENT moved.

Queries: dense (cosine over chunk vectors, a document scores as its best chunk), lexical (BM25 over documents),
hybrid (both, fused by RRF or a weighted sum over each side's top `candidates`), then an optional cross-encoder
rerank of the top `rerank_top`. Metadata filters narrow every mode. The query is embedded by the index's own model
(loaded from the manifest) unless a model is given, and a model of another version is refused (StaleIndexError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, choices
from . import vectors
from .fusion import RRF_K, fuse
from .lexical import Lexical
from .manifest import check, current, read_manifest
from .store import Store

MODES = ("dense", "lexical", "hybrid")
EXACT_FILTER_MAX = 200_000  # a filter allowing at most this many chunks is searched exactly over stored embeddings


class Index:
    def __init__(self, path: Path, gen: Path):
        self.path, self.gen = path, gen
        self.manifest = read_manifest(gen)
        self.store = Store(gen / "docs.sqlite", readonly=True)
        self.vectors = vectors.load(gen / "vectors.faiss")
        self.kind = vectors.kind_of(self.vectors)
        self._lexical: Lexical | None = None
        self._emb: np.ndarray | None = None
        self._model = None

    @classmethod
    def open(cls, path: str | Path) -> Index:
        path = Path(path)
        return cls(path, current(path))

    def stale(self) -> bool:
        """True when a write has published a newer generation since this one was opened."""
        try:
            return current(self.path) != self.gen
        except FileNotFoundError:
            return True

    def close(self) -> None:
        self.store.close()

    # -- facts --------------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        size = sum(f.stat().st_size for f in self.gen.rglob("*") if f.is_file())
        return {"path": str(self.path), "generation": self.gen.name, **self.manifest, "bytes": size,
                "vectors": int(self.vectors.ntotal)}

    @property
    def lexical(self) -> Lexical:
        if self._lexical is None:
            self._lexical = Lexical.load(self.gen / "bm25")
        return self._lexical

    # -- the query model ----------------------------------------------------------------------------------------
    def model(self, model=None):
        """The model that embeds queries: `model` (a Model, checked against the manifest) or the index's own."""
        if model is not None:
            check(self.manifest, model, self.path)
            return model
        if self._model is None:
            from ..api import load

            built = self.manifest["model"]
            m = load(built["source"], max_length=built["max_length"], stride=built["stride"])
            check(self.manifest, m, self.path)  # the checkpoint at that path may have changed since the build
            self._model = m
        return self._model

    def embed_query(self, query: str, model=None) -> np.ndarray:
        m = self.model(model)
        return m.embed([query], pooling=self.manifest["model"]["pooling"], normalize=True)[0]  # (H,)

    # -- search -------------------------------------------------------------------------------------------------
    def search(self, query: str, *, mode: str = "dense", k: int = 10, model=None, vector: np.ndarray | None = None,
               fusion: str = "rrf", alpha: float = 0.5, rrf_k: int = RRF_K, candidates: int = 100,
               where: dict[str, Any] | None = None, rerank=None, rerank_top: int = 20) -> list[dict[str, Any]]:
        """Hits best first: {"id", "score", "title", "text", "metadata", "chunk": {"start", "end", "text"}}."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}; choose {choices(MODES)}")
        if not isinstance(query, str):
            raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
        if k < 1 or candidates < 1 or rerank_top < 1:
            raise InvalidInputError(f"k, candidates and rerank_top must be >= 1 (got {k}, {candidates}, {rerank_top})")
        allowed_rows = allowed_chunks = None
        if where:
            allowed_rows, allowed_chunks = self.store.filtered(where)
            if not allowed_rows:
                return []
        depth = max(k, rerank_top if rerank is not None else 0)
        wanted = max(depth, candidates) if mode == "hybrid" else depth
        dense: list[tuple[int, float]] = []
        best: dict[int, tuple[int, int]] = {}
        if mode != "lexical":
            if vector is None:
                vector = self.embed_query(query, model)
            dense, best = self._dense(np.asarray(vector, dtype=np.float32), wanted, allowed_chunks)
        lexical = self.lexical.search(query, wanted, allowed_rows) if mode != "dense" else []
        ranking = dense if mode == "dense" else lexical if mode == "lexical" else \
            fuse(dense, lexical, fusion, alpha, rrf_k)
        ranking = ranking[:depth]
        hits = self._hits(query, ranking, best)
        if rerank is not None and hits:
            hits = self._rerank(query, hits, rerank, rerank_top)
        return hits[:k]

    def _dense(self, vector: np.ndarray, wanted: int, allowed: list[int] | None):
        """Top documents by their best chunk: ([(doc row, score)], {doc row: (start, end) of the best chunk})."""
        if allowed is not None and (len(allowed) <= EXACT_FILTER_MAX or not vectors.can_filter(self.kind)):
            scores, ids = self._exact(vector, np.array(allowed, dtype=np.int64))
            return self._by_doc(scores, ids, wanted)
        total = int(self.vectors.ntotal)
        fetch = min(total, wanted * 4)
        allow = np.array(allowed, dtype=np.int64) if allowed is not None else None
        while True:  # several chunks of one document can fill the list: fetch deeper until enough documents
            scores, ids = vectors.search(self.vectors, vector[None, :], fetch, allow)
            docs, best = self._by_doc(scores[0], ids[0], wanted)
            if len(docs) >= wanted or fetch >= total:
                return docs, best
            fetch = min(total, fetch * 4)

    def _exact(self, vector: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._emb is None:
            from .writer import _load_embeddings

            self._emb = _load_embeddings(self.gen, mmap=True)
            self._ids = np.load(self.gen / "ids.npy")
        rows = np.searchsorted(self._ids, allowed)  # ids.npy is sorted: chunk ids only grow
        scores = np.asarray(self._emb[rows], dtype=np.float32) @ vector  # (n_allowed,)
        order = np.argsort(-scores, kind="stable")
        return scores[order], allowed[order]

    def _by_doc(self, scores, ids, wanted: int):
        valid = [(int(i), float(s)) for i, s in zip(ids, scores, strict=True) if i >= 0]
        where = self.store.chunk_docs([i for i, _ in valid])
        docs: list[tuple[int, float]] = []
        best: dict[int, tuple[int, int]] = {}
        for cid, score in valid:
            if cid not in where:
                continue
            doc, start, end = where[cid]
            if doc not in best:  # scores come best first: the first chunk seen is the document's best
                best[doc] = (start, end)
                docs.append((doc, score))
                if len(docs) >= wanted:
                    break
        return docs, best

    def _hits(self, query: str, ranking: list[tuple[int, float]], best: dict[int, tuple[int, int]]) -> list[dict]:
        rows = [d for d, _ in ranking]
        if not rows:
            return []
        docs = self.store.docs(rows)
        missing = [r for r in rows if r not in best]
        chunks = self.store.chunks_of(missing) if missing else {}
        hits = []
        for row, score in ranking:
            doc = docs[row]
            content = doc.pop("content")
            if row in best:
                start, end = best[row]
            else:  # a lexical hit: the chunk with the most query-term occurrences
                spans = chunks.get(row) or [(0, 0, len(content))]
                _, start, end = max(spans, key=lambda c: self.lexical.term_hits(query, content[c[1]:c[2]])) \
                    if len(spans) > 1 else spans[0]
            hits.append({**doc, "score": score, "chunk": {"start": start, "end": end, "text": content[start:end]}})
        return hits

    def _rerank(self, query: str, hits: list[dict], model, top: int) -> list[dict]:
        head, tail = hits[:top], hits[top:]
        texts = [f"{h['title']} {h['text']}".strip() if h["title"] else h["text"] for h in head]
        for r in model.rerank(query, texts):
            head[r["index"]]["retrieval_score"] = head[r["index"]]["score"]
            head[r["index"]]["score"] = r["score"]
        return sorted(head, key=lambda h: -h["score"]) + tail
