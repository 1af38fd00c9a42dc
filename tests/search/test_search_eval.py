"""Retrieval metrics on hand-computed cases, and the fusion rules."""

from __future__ import annotations

import math

import pytest

from robertaops.search.evaluate import evaluate, mrr_at, ndcg_at, recall_at
from robertaops.search.fusion import fuse, rrf, weighted


def test_ndcg_by_hand():
    rels = {"a": 1, "b": 2}
    # ranking c, b, a: dcg = 0 + 2/log2(3) + 1/log2(4); ideal = 2/log2(2) + 1/log2(3)
    expected = (2 / math.log2(3) + 1 / 2) / (2 + 1 / math.log2(3))
    assert ndcg_at(["c", "b", "a"], rels) == pytest.approx(expected)
    assert ndcg_at(["b", "a"], rels) == pytest.approx(1.0)
    assert ndcg_at(["x"], rels) == 0.0


def test_recall_and_mrr():
    rels = {"a": 1, "b": 1, "z": 0}
    assert recall_at(["a", "x"], rels) == 0.5
    assert mrr_at(["x", "y", "b"], rels) == pytest.approx(1 / 3)
    assert mrr_at(["z"], rels) == 0.0


def test_evaluate_skips_unjudged_and_drops_the_query_itself():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 0}}
    out = evaluate({"q1": ["q1", "d1"], "q2": []}, qrels)
    assert out["queries"] == 2 and out["ndcg@10"] == 0.5 and out["mrr@10"] == 0.5


def test_rrf_and_weighted():
    dense, lexical = [(1, 0.9), (2, 0.5)], [(2, 10.0), (3, 1.0)]
    fused = rrf([dense, lexical], k=60)
    assert fused[0][0] == 2 and fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    w = dict(weighted(dense, lexical, alpha=0.5))
    assert w[2] == pytest.approx(0.5 * 0 + 0.5 * 1) and w[1] == pytest.approx(0.5) and w[3] == 0.0
    assert [d for d, _ in fuse(dense, lexical, "weighted", alpha=1.0)][:1] == [1]
