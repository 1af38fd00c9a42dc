"""Online drift gauges: the rolling centroid distance equals the offline formula on the window, old rows leave the
window, PSI waits for enough rows, and label/length PSI match the offline computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robertaops.monitoring.drift import Reference
from robertaops.monitoring.online import MIN_ROWS, OnlineDrift
from robertaops.monitoring.stats import binned, psi


@pytest.fixture
def reference():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 8)).astype(np.float32) + 2.0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Reference(embeddings=emb, lengths=rng.integers(5, 50, 200), labels=["neg", "pos"],
                     label_fractions=np.array([0.5, 0.5]))


def _distance(a, b):
    return 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_centroid_distance_over_the_window(reference):
    rng = np.random.default_rng(1)
    drift = OnlineDrift(reference, window=100)
    assert math.isnan(drift.gauges()["centroid_cosine_distance"])
    old = rng.normal(size=(150, 8))
    new = rng.normal(size=(100, 8)) - 1.0
    drift.update(embeddings=old)
    drift.update(embeddings=new)  # pushes every `old` row out of the 100-row window
    unit = new / np.linalg.norm(new, axis=1, keepdims=True)
    gauges = drift.gauges()
    assert gauges["window_embeddings"] == 100.0 and drift.seen == 250
    assert gauges["centroid_cosine_distance"] == pytest.approx(_distance(unit.mean(0), reference.centroid), abs=1e-9)


def test_psi_needs_enough_rows_then_matches_offline(reference):
    drift = OnlineDrift(reference, window=500)
    drift.update(lengths=[10] * (MIN_ROWS - 1), labels=["pos"] * (MIN_ROWS - 1))
    g = drift.gauges()
    assert math.isnan(g["psi_lengths"]) and math.isnan(g["psi_labels"]) and g["drift"] == 0.0
    lengths = list(range(5, 5 + 120))
    labels = ["pos"] * 90 + ["neg"] * 30
    drift = OnlineDrift(reference, window=500)
    drift.update(lengths=lengths, labels=labels)
    g = drift.gauges()
    expected_len = psi(binned(reference.lengths, reference.edges), binned(np.array(lengths), reference.edges))
    assert g["psi_lengths"] == pytest.approx(expected_len)
    assert g["psi_labels"] == pytest.approx(psi([0.5, 0.5], [0.25, 0.75]))
    assert g["drift"] == float(expected_len > 0.25 or g["psi_labels"] > 0.25)
