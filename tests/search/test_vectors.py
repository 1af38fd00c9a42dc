"""FAISS index kinds against exact search: the auto choice by size, and the recall of "pq" on unstructured data."""

from __future__ import annotations

import numpy as np
import pytest

from robertaops.errors import InvalidInputError
from robertaops.search import vectors


def unit(rng, n, d):
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_choice_by_size():
    assert [vectors.choose(n) for n in (10, 50_000, 50_001, 5_000_000, 5_000_001)] == [
        "flat", "flat", "pq", "pq", "ivf"]
    assert vectors.choose(10, "hnsw") == "hnsw"
    with pytest.raises(InvalidInputError, match="unknown index kind"):
        vectors.choose(10, "lsh")


@pytest.mark.parametrize("int8", [False, True])
def test_pq_recall_on_random_vectors(int8):
    """i.i.d. random vectors are the worst case for an ANN index (no structure); re-ranking keeps recall@10 high."""
    rng = np.random.default_rng(0)
    base, queries = unit(rng, 20_000, 128), unit(rng, 100, 128)
    ids = np.arange(len(base), dtype=np.int64) * 3 + 7  # ids unrelated to row numbers
    truth = ids[np.argsort(-(queries @ base.T), axis=1)[:, :10]]
    index = vectors.build(base, ids, "pq", int8)
    assert vectors.kind_of(index) == "pq"
    scores, found = vectors.search(index, queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= 0.98
    exact = np.take_along_axis(queries @ base.T, ((found - 7) // 3), axis=1)
    np.testing.assert_allclose(scores, exact, atol=0.01 if int8 else 1e-5)  # re-ranked scores are the cosines


def test_pq_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    base = unit(rng, 2_000, 64)
    index = vectors.build(base, np.arange(2_000, dtype=np.int64), "pq")
    vectors.save(index, tmp_path / "v.faiss")
    loaded = vectors.load(tmp_path / "v.faiss")
    assert vectors.kind_of(loaded) == "pq" and not vectors.can_remove("pq") and not vectors.can_filter("pq")
    np.testing.assert_array_equal(vectors.search(loaded, base[:5], 3)[1], vectors.search(index, base[:5], 3)[1])
    assert list(vectors.search(loaded, base[:5], 1)[1][:, 0]) == [0, 1, 2, 3, 4]
