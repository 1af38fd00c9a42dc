"""Model tiering: answer with a small model, escalate to the full one only the inputs it is unsure of.

`Cascade(small, large, threshold)` classifies every input with `small` (a distilled or int8 model with the same
labels); inputs whose top probability is below `threshold` are classified again by `large`, whose answer replaces
the small one. `stats` counts inputs and escalations, so the compute saved is measurable: with a small model that
costs c of the large one, a cascade costs c + escalated fraction of it (benchmarks/cascade.py reports both on
SST-2). The server runs the same rule (`--cascade`, serving/backend.py) with `merge_escalated` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError


@dataclass
class CascadeStats:
    inputs: int = 0
    escalated: int = 0

    @property
    def escalated_fraction(self) -> float:
        return self.escalated / self.inputs if self.inputs else 0.0


def check_compatible(small_labels: Sequence[str], large_labels: Sequence[str], threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(f"cascade threshold must be in [0, 1], got {threshold}")
    if tuple(small_labels) != tuple(large_labels):
        raise InvalidInputError(f"a cascade needs the same labels in the same order: small {list(small_labels)}, "
                                f"large {list(large_labels)}")
    if not small_labels:
        raise InvalidInputError("a cascade needs two classifiers (these models have no labels)")


def unsure(rows: list[list[dict]], threshold: float) -> list[int]:
    """Indices of the inputs whose best label scores below `threshold` (rows: every label, best first)."""
    return [i for i, row in enumerate(rows) if row[0]["score"] < threshold]


def merge_escalated(small_rows: list[list[dict]], escalated: list[int], large_rows: list[list[dict]],
                    top_k: int | None) -> list[list[dict]]:
    """The small model's answers with the escalated ones replaced by the large model's, cut to top_k."""
    out = list(small_rows)
    for i, row in zip(escalated, large_rows, strict=True):
        out[i] = row
    return [row[:top_k] if top_k else row for row in out]


class Cascade:
    """Two classifiers with the same labels behind one `classify`; see the module docstring."""

    def __init__(self, small: Any, large: Any, threshold: float = 0.9):
        check_compatible(small.config.id2label, large.config.id2label, threshold)
        self.small, self.large, self.threshold = small, large, threshold
        self.stats = CascadeStats()

    def classify(self, texts, top_k: int | None = 1, truncate: bool = False):
        single = isinstance(texts, (str, tuple))
        items = [texts] if single else list(texts)
        rows = self.small.classify(items, top_k=None, truncate=truncate)
        escalated = unsure(rows, self.threshold)
        large_rows = self.large.classify([items[i] for i in escalated], top_k=None, truncate=truncate) \
            if escalated else []
        self.stats.inputs += len(items)
        self.stats.escalated += len(escalated)
        out = merge_escalated(rows, escalated, large_rows, top_k)
        return out[0] if single else out
