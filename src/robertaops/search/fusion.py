"""Hybrid search: fusing a dense and a lexical ranking.

- Reciprocal rank fusion (RRF, Cormack et al. 2009): score = sum over rankings of 1 / (k + rank). Uses ranks only,
  so it needs no score calibration between cosine and BM25; k = 60 is the paper's constant.
- Weighted: each ranking's scores min-max normalised to [0, 1] over its own candidates, then
  alpha * dense + (1 - alpha) * lexical; a document missing from one ranking gets 0 there.
"""

from __future__ import annotations

from ..errors import InvalidInputError, choices

FUSIONS = ("rrf", "weighted")
RRF_K = 60


def rrf(rankings: list[list[tuple[int, float]]], k: int = RRF_K) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (doc, _) in enumerate(ranking, 1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda x: -x[1])


def _minmax(ranking: list[tuple[int, float]]) -> dict[int, float]:
    if not ranking:
        return {}
    values = [s for _, s in ranking]
    lo, hi = min(values), max(values)
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in ranking}


def weighted(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], alpha: float) -> list[tuple[int, float]]:
    a, b = _minmax(dense), _minmax(lexical)
    scores = {d: alpha * a.get(d, 0.0) + (1 - alpha) * b.get(d, 0.0) for d in a.keys() | b.keys()}
    return sorted(scores.items(), key=lambda x: -x[1])


def fuse(dense, lexical, fusion: str = "rrf", alpha: float = 0.5, rrf_k: int = RRF_K) -> list[tuple[int, float]]:
    if fusion not in FUSIONS:
        raise InvalidInputError(f"unknown fusion {fusion!r}; choose {choices(FUSIONS)}")
    if not 0.0 <= alpha <= 1.0:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha}")
    if rrf_k < 1:
        raise InvalidInputError(f"rrf_k must be >= 1, got {rrf_k}")
    return rrf([dense, lexical], rrf_k) if fusion == "rrf" else weighted(dense, lexical, alpha)
