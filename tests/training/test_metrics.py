"""Metrics against their reference implementations on the same data: scikit-learn, scipy, seqeval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from seqeval.metrics import f1_score, precision_score, recall_score
from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score as sk_f1

from robertaops.training import metrics as M

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_classification_scores_match_sklearn(n_classes):
    y = RNG.integers(0, n_classes, 200)
    p = np.where(RNG.random(200) < 0.6, y, RNG.integers(0, n_classes, 200))
    assert M.accuracy(y, p) == pytest.approx(accuracy_score(y, p))
    assert M.macro_f1(y, p) == pytest.approx(sk_f1(y, p, average="macro"))
    assert M.binary_f1(y, p, positive=1) == pytest.approx(sk_f1(y == 1, p == 1))


def test_macro_f1_with_a_class_never_predicted():
    y, p = [0, 1, 2, 2], [0, 1, 1, 1]
    assert M.macro_f1(y, p) == pytest.approx(sk_f1(y, p, average="macro", zero_division=0))


def test_correlations_match_scipy_with_ties():
    x = RNG.integers(0, 6, 300).astype(float)  # many ties
    y = x + RNG.normal(0, 2, 300)
    assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])
    np.testing.assert_allclose(M.rank(x), stats.rankdata(x))


def test_sts_spearman_is_spearman_of_cosines():
    a, b = RNG.normal(size=(50, 8)), RNG.normal(size=(50, 8))
    gold = RNG.random(50)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert M.sts_spearman(a, b, gold) == pytest.approx(stats.spearmanr(cos, gold)[0])


def _random_tags(n: int, iob1: bool) -> list[str]:
    out = []
    for _ in range(n):
        r = RNG.random()
        kind = RNG.choice(["PER", "LOC", "ORG"])
        if r < 0.5:
            out.append("O")
        elif r < 0.7 and not iob1:
            out.append(f"B-{kind}")
        else:
            out.append(f"I-{kind}")
    return out


@pytest.mark.parametrize("iob1", [False, True], ids=["IOB2", "IOB1"])
def test_entity_scores_match_seqeval(iob1):
    gold = [_random_tags(int(RNG.integers(1, 15)), iob1) for _ in range(300)]
    pred = [[t if RNG.random() < 0.8 else _random_tags(1, iob1)[0] for t in s] for s in gold]
    ours = M.entity_scores(gold, pred)
    assert ours["precision"] == pytest.approx(precision_score(gold, pred))
    assert ours["recall"] == pytest.approx(recall_score(gold, pred))
    assert ours["f1"] == pytest.approx(f1_score(gold, pred))


def test_entities_exact_spans():
    assert M.entities(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5)]
    # a span with the wrong end is wrong
    assert M.entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0


def _ece_reference(probs, labels, n_bins=15):
    """Guo et al.'s definition, written out bin by bin."""
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        idx = [i for i in range(len(conf)) if lo < conf[i] <= hi]
        if idx:
            acc = np.mean([pred[i] == labels[i] for i in idx])
            total += len(idx) / len(conf) * abs(acc - np.mean(conf[idx]))
    return total


def test_ece():
    logits = RNG.normal(0, 2, (500, 3))
    probs = M.softmax(logits)
    labels = RNG.integers(0, 3, 500)
    assert M.ece(probs, labels) == pytest.approx(_ece_reference(probs, labels))
    # a model always right with confidence 1 is perfectly calibrated; always wrong at 1 has ECE 1
    one_hot = np.eye(3)[labels]
    assert M.ece(one_hot, labels) == 0.0
    assert M.ece(one_hot, (labels + 1) % 3) == pytest.approx(1.0)
