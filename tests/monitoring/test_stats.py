"""Two-sample statistics against known answers: AUC against sklearn (a test oracle), PSI by hand, MMD and the domain
classifier on samples that do and do not differ."""

from __future__ import annotations

import numpy as np
import pytest

from robertaops.monitoring.stats import auc, binned, domain_auc, length_edges, mmd_test, psi


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = (rng.random(200) < 0.4).astype(int)
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_psi_by_hand():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    expected = (0.3 - 0.5) * np.log(0.3 / 0.5) + (0.4 - 0.2) * np.log(0.4 / 0.2)
    assert psi(p, q) == pytest.approx(expected)
    assert psi(p, p) == 0.0


def test_binned_and_edges():
    edges = length_edges(np.arange(1, 101), bins=4)
    assert edges.tolist() == pytest.approx([25.75, 50.5, 75.25])
    assert binned(np.array([1, 30, 30, 99]), edges).tolist() == [0.25, 0.5, 0.0, 0.25]


def test_mmd_and_domain_auc_separate_shifted_from_same():
    rng = np.random.default_rng(1)
    a, same, shifted = rng.normal(size=(150, 16)), rng.normal(size=(150, 16)), rng.normal(size=(150, 16))
    shifted[:, 0] += 1.0  # one direction moved by one standard deviation
    null = mmd_test(a, same, permutations=99, seed=0)
    drift = mmd_test(a, shifted, permutations=99, seed=0)
    assert null["p_value"] > 0.05 and drift["p_value"] == pytest.approx(0.01)  # the smallest p 99 permutations give
    assert drift["mmd2"] > 5 * abs(null["mmd2"])
    assert 0.35 < domain_auc(a, same) < 0.65
    assert 0.6 < domain_auc(a, shifted) < 0.8  # the Bayes-optimal AUC for a 1-sd shift is Phi(1/sqrt 2) = 0.76
