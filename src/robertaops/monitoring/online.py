"""Online drift: a rolling window of what a served model sees, compared with a fitted reference, as gauge values.

The server feeds each model's `OnlineDrift` with what it already computes (embeddings, token counts, predicted
labels) and exports `gauges()` to Prometheus. Only cheap statistics run per scrape: the centroid's cosine distance
(a running sum, O(d)) and PSI of lengths and labels (bin counts). MMD and the domain classifier need the whole
window and a permutation test: that is `robertaops drift report`'s job, not a scrape's.

    drift = OnlineDrift(Reference.load("ref.npz"), window=2000)
    drift.update(embeddings=vectors, lengths=[12, 40], labels=["POSITIVE", "NEGATIVE"])
    drift.gauges()  # {"centroid_cosine_distance": 0.03, "psi_lengths": 0.02, "psi_labels": 0.01, ...}
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from .drift import PSI_DRIFT, Reference, label_fractions
from .stats import binned, psi

MIN_ROWS = 50  # below this, PSI over 10 bins is mostly noise: report NaN (Prometheus shows a gap, not a false alarm)


class OnlineDrift:
    """Rolling windows (the last `window` inputs) of embeddings, lengths and labels against a reference.

    Thread-safe: the server's worker threads update it while a scrape reads it."""

    def __init__(self, reference: Reference, window: int = 2000):
        self.reference = reference
        self.window = window
        self._centroid = reference.centroid.astype(np.float64)
        self._edges = reference.edges
        self._ref_lengths = binned(reference.lengths, self._edges)
        self._embeddings: deque[np.ndarray] = deque(maxlen=window)
        self._sum = np.zeros_like(self._centroid)  # running sum of the window's embeddings (O(d) per update)
        self._lengths: deque[int] = deque(maxlen=window)
        self._labels: deque[str] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.seen = 0

    def update(self, embeddings=None, lengths=None, labels=None) -> None:
        """Add observations; any of the three may be given alone (a classify request has no embeddings)."""
        with self._lock:
            if embeddings is not None:
                rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
                rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)  # like the reference
                for row in rows:
                    if len(self._embeddings) == self.window:
                        self._sum -= self._embeddings[0]
                    self._embeddings.append(row)
                    self._sum += row
                self.seen += len(rows)
            if lengths is not None:
                self._lengths.extend(int(n) for n in lengths)
            if labels is not None:
                self._labels.extend(str(x) for x in labels)

    def gauges(self) -> dict[str, float]:
        """Gauge name -> value (NaN while a window holds too little to say anything)."""
        with self._lock:
            n_emb, n_len, n_lab = len(self._embeddings), len(self._lengths), len(self._labels)
            out = {"window_embeddings": float(n_emb), "window_lengths": float(n_len), "window_labels": float(n_lab)}
            if n_emb:
                mean = self._sum / n_emb
                cos = mean @ self._centroid / (np.linalg.norm(mean) * np.linalg.norm(self._centroid) + 1e-12)
                out["centroid_cosine_distance"] = float(1.0 - cos)
            else:
                out["centroid_cosine_distance"] = float("nan")
            out["psi_lengths"] = (psi(self._ref_lengths, binned(np.fromiter(self._lengths, dtype=np.int64),
                                                                 self._edges)) if n_len >= MIN_ROWS else float("nan"))
            if self.reference.labels and n_lab >= MIN_ROWS:
                out["psi_labels"] = psi(self.reference.label_fractions,
                                        label_fractions(list(self._labels), self.reference.labels))
            else:
                out["psi_labels"] = float("nan")
            out["drift"] = float(any(out[k] > PSI_DRIFT for k in ("psi_lengths", "psi_labels") if out[k] == out[k]))
            return out
