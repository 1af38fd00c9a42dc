"""Rerank documents for a query.

With a cross-encoder (a sequence-classification model with one output) each (query, document) pair is scored
and squashed with a sigmoid, as TEI does (`raw_scores=True` keeps the logit). Any other model reranks by the cosine
of query and document embeddings (a bi-encoder).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .classify import logits
from .runner import Runner
from .similarity import similarity


def is_cross_encoder(runner: Runner) -> bool:
    return runner.cfg.task == "sequence_classification" and runner.cfg.num_labels == 1


def rerank(runner: Runner, query: str, documents: list[str], *, pooling: str, raw_scores: bool = False,
           return_text: bool = False, truncate: bool = False, top_n: int | None = None) -> list[dict]:
    """[{"index", "score"(, "text")}] sorted by score, best first."""
    if not isinstance(query, str):
        raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
    if top_n is not None and top_n < 1:
        raise InvalidInputError(f"top_n must be >= 1 or None, got {top_n}")
    if not documents:
        return []
    if is_cross_encoder(runner):
        raw = logits(runner, [(query, d) for d in documents], truncate=truncate)[:, 0]
        scores = cross_encoder_scores(raw, raw_scores)
    else:
        scores = similarity(runner, [query], documents, pooling=pooling, truncate=truncate)[0]
    return ranked(scores, documents, return_text=return_text, top_n=top_n)


def ranked(scores, documents: list[str], *, return_text: bool = False, top_n: int | None = None) -> list[dict]:
    """[{"index", "score"(, "text")}] best first, at most top_n."""
    order = sorted(range(len(documents)), key=lambda i: -float(scores[i]))[: top_n or len(documents)]
    out = []
    for i in order:
        hit = {"index": i, "score": float(scores[i])}
        if return_text:
            hit["text"] = documents[i]
        out.append(hit)
    return out


def cross_encoder_scores(raw: np.ndarray, raw_scores: bool) -> np.ndarray:
    """A cross-encoder's logits -> scores: sigmoid (TEI's convention) unless raw scores are asked for."""
    return raw if raw_scores else 1.0 / (1.0 + np.exp(-raw))
