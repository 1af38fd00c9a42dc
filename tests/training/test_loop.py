"""Length-bucketed batches: every row once per epoch, much less padding than random batches, seeded order."""

from __future__ import annotations

import numpy as np

from robertaops.training.finetune import subset
from robertaops.training.loop import bucketed_batches


def test_bucketed_batches_cover_every_row_once_with_little_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 120, 5000).tolist()
    batches = bucketed_batches(lengths, 32, np.random.default_rng(1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(5000)) and max(len(b) for b in batches) == 32
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    order = rng.permutation(5000)
    random_padded = sum(len(order[k:k + 32]) * max(lengths[i] for i in order[k:k + 32]) for k in range(0, 5000, 32))
    assert padded < 0.6 * random_padded
    # seeded: the same generator state gives the same batches; another gives another order
    assert batches == bucketed_batches(lengths, 32, np.random.default_rng(1))
    assert batches != bucketed_batches(lengths, 32, np.random.default_rng(2))


def test_subset_is_seeded_and_keeps_file_order():
    rows = list(range(100))
    a = subset(rows, 10, 42)
    assert a == subset(rows, 10, 42) and a == sorted(a) and len(a) == 10
    assert subset(rows, None, 42) == rows and subset(rows, 500, 42) == rows


def test_unbucketed_batches_are_random_batches():
    lengths = list(range(1000))
    batches = bucketed_batches(lengths, 10, np.random.default_rng(0), mega_batch=1)
    assert sorted(i for b in batches for i in b) == lengths
    spans = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert np.mean(spans) > 500  # random rows: a wide length range in each batch (bucketed: about 10)
