"""BM25 over document contents (title + text) with `bm25s`.

bm25s builds a sparse matrix of precomputed scores and cannot add or remove documents, so every write rebuilds it
from SQLite. That costs tokenization only (seconds for 100k documents), no model: the expensive part of an index,
the embeddings, is still incremental. Row i of the BM25 index is document row `rows[i]` in SQLite.
Tokenization: lower-cased words of 2+ characters, English stopwords removed, no stemming (no extra dependency).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

STOPWORDS = "en"


def _tokenize(texts: list[str]):
    import bm25s

    return bm25s.tokenize(texts, stopwords=STOPWORDS, return_ids=False, show_progress=False)


class Lexical:
    def __init__(self, retriever, rows: np.ndarray):
        self.retriever = retriever
        self.rows = rows  # (n,) SQLite doc row of each BM25 row
        self.position = {int(r): i for i, r in enumerate(rows)}

    @classmethod
    def build(cls, batches) -> Lexical:
        """From (rows, contents) batches (Store.all_docs())."""
        import bm25s

        rows: list[int] = []
        tokens: list[list[str]] = []
        for ids, contents in batches:
            rows += ids
            tokens += _tokenize(contents)
        retriever = bm25s.BM25()
        if tokens:
            retriever.index(tokens, show_progress=False)
        return cls(retriever if tokens else None, np.array(rows, dtype=np.int64))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "rows.npy", self.rows)
        if self.retriever is not None:
            self.retriever.save(str(directory), show_progress=False)
        (directory / "ok.json").write_text(json.dumps({"empty": self.retriever is None}))

    @classmethod
    def load(cls, directory: Path) -> Lexical:
        import bm25s

        rows = np.load(directory / "rows.npy")
        empty = json.loads((directory / "ok.json").read_text())["empty"]
        retriever = None if empty else bm25s.BM25.load(str(directory), mmap=True, show_progress=False, verbosity=0)
        return cls(retriever, rows)

    def search(self, query: str, k: int, allowed_rows: list[int] | None = None) -> list[tuple[int, float]]:
        """[(doc row, score)] best first, only documents with a positive score (they share a query term)."""
        if self.retriever is None or not len(self.rows):
            return []
        tokens = [t for t in _tokenize([query])[0] if t in self.retriever.vocab_dict]
        if not tokens:
            return []
        mask = None
        if allowed_rows is not None:
            mask = np.zeros(len(self.rows), dtype=np.float32)
            mask[[self.position[r] for r in allowed_rows if r in self.position]] = 1.0
        k = min(k, len(self.rows))
        docs, scores = self.retriever.retrieve([tokens], k=k, show_progress=False, weight_mask=mask, n_threads=1)
        return [(int(self.rows[d]), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]

    def term_hits(self, query: str, text: str) -> int:
        """How many query-term occurrences `text` holds (picks a lexical hit's best chunk)."""
        terms = set(_tokenize([query])[0])
        return sum(1 for t in _tokenize([text])[0] if t in terms)
