"""Evaluation metrics in numpy, matching the reference implementations the tests compare against.

- accuracy, macro-F1 and binary F1 as scikit-learn computes them (a class never predicted nor present is left out
  of the macro average; an undefined F1 counts 0);
- entity-level precision/recall/F1 with exact span match, decoding tags like seqeval's default (conlleval) mode,
  which reads IOB1 and IOB2 alike (CoNLL-2003 here is IOB2; an I- after O or after another type opens an entity);
- Pearson and Spearman (average ranks for ties, as scipy) without scipy at run time;
- expected calibration error over 15 equal-width confidence bins (Guo et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    return float((t == p).mean()) if len(t) else 0.0


def _f1(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return float(2 * tp / denom) if denom else 0.0


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    classes = np.union1d(t, p)
    scores = [_f1(np.sum((p == c) & (t == c)), np.sum((p == c) & (t != c)), np.sum((p != c) & (t == c)))
              for c in classes]
    return float(np.mean(scores)) if scores else 0.0


def binary_f1(y_true: Sequence, y_pred: Sequence, positive=1) -> float:
    t, p = np.asarray(y_true) == positive, np.asarray(y_pred) == positive
    return _f1(np.sum(p & t), np.sum(p & ~t), np.sum(~p & t))


# -- entities -----------------------------------------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '_'); a bare 'PER' (no prefix) -> ('P', 'ER'), as seqeval reads it."""
    return tag[0], (tag[1:].split("-", maxsplit=1)[-1] or "_")


def _ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) spans (inclusive) of one sentence's tags."""
    out = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = _split(chunk)
        if _ends(prev_tag, tag, prev_type, type_):
            out.append((prev_type, begin, i - 1))
        if _starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return out


def entity_scores(true: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 over exactly matching (sentence, type, span) entities."""
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} gold sentences but {len(pred)} predicted")
    gold, found = set(), set()
    for k, (t, p) in enumerate(zip(true, pred, strict=True)):
        if len(t) != len(p):
            raise ValueError(f"sentence {k}: {len(t)} gold tags but {len(p)} predicted")
        gold.update((k, *e) for e in entities(t))
        found.update((k, *e) for e in entities(p))
    hit = len(gold & found)
    precision = hit / len(found) if found else 0.0
    recall = hit / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# -- correlations -------------------------------------------------------------------------------------------------
def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom else 0.0


def rank(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata's 'average')."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Runs of equal values: each run gets the mean of the positions it spans.
    boundaries = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1], True])
    ranks = np.empty(len(a), dtype=np.float64)
    for lo, hi in zip(boundaries[:-1], boundaries[1:], strict=True):
        ranks[order[lo:hi]] = (lo + 1 + hi) / 2.0
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(rank(x), rank(y))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)


def sts_spearman(emb_a: np.ndarray, emb_b: np.ndarray, gold: Sequence[float]) -> float:
    """Spearman correlation between gold similarity scores and the cosine of the two texts' embeddings."""
    return spearman(cosine(np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)), gold)


# -- calibration --------------------------------------------------------------------------------------------------
def ece(probs: np.ndarray, labels: Sequence[int], n_bins: int = 15) -> float:
    """Expected calibration error: sum over bins (lo, hi] of |bin| / n * |accuracy - mean confidence|."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if not len(y):
        return 0.0
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return float(total)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)
