"""Dynamic masking: rates, specials never touched, fresh masks per call, exact replay from a generator state."""

from __future__ import annotations

import pytest
import torch

from robertaops.training.masking import IGNORE, Masker

SPECIALS = (0, 1, 2, 3, 99)  # <s> <pad> </s> <unk> <mask>
V, MASK = 100, 99


def batch(n=2000, t=128, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 99, (n, t), generator=g)  # (n, t) ordinary tokens
    ids[:, 0], ids[:, -1] = 0, 2
    ids[::3, -20:] = 1  # some padding
    return ids


def test_rates_80_10_10_over_many_tokens():
    ids = batch()
    inputs, labels = Masker(V, MASK, SPECIALS)(ids, torch.Generator().manual_seed(1))
    ordinary = (ids > 3) & (ids != MASK)
    selected = labels != IGNORE
    n = int(selected.sum())
    assert n / int(ordinary.sum()) == pytest.approx(0.15, abs=0.003)  # ~245k candidate tokens: sd ~0.0007
    masked = selected & (inputs == MASK)
    unchanged = selected & (inputs == ids)
    randomised = selected & (inputs != MASK) & (inputs != ids)
    assert int(masked.sum()) / n == pytest.approx(0.8, abs=0.01)
    # a random draw may hit the original token (1/94 of the time), which then counts as unchanged
    assert int(randomised.sum()) / n == pytest.approx(0.1 * 93 / 94, abs=0.008)
    assert int(unchanged.sum()) / n == pytest.approx(0.1 + 0.1 / 94, abs=0.008)
    assert torch.equal(labels[selected], ids[selected])  # labels are the original tokens
    assert torch.equal(inputs[~selected], ids[~selected])  # nothing else changes


def test_specials_and_padding_are_never_selected_nor_inserted():
    ids = batch()
    inputs, labels = Masker(V, MASK, SPECIALS)(ids, torch.Generator().manual_seed(2))
    special = (ids <= 3) | (ids == MASK)
    assert not (labels[special] != IGNORE).any()
    assert torch.equal(inputs[special], ids[special])
    selected = labels != IGNORE
    replaced = inputs[selected & (inputs != MASK)]
    assert not ((replaced <= 3).any() or (replaced == MASK).any())  # random replacements are ordinary tokens


def test_fresh_mask_each_call_and_exact_replay():
    ids = batch(50)
    masker = Masker(V, MASK, SPECIALS)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    first, _ = masker(ids, gen)
    second, _ = masker(ids, gen)
    assert not torch.equal(first, second)  # dynamic: the same sequence gets a new mask when seen again
    gen.set_state(state)
    replay, _ = masker(ids, gen)
    assert torch.equal(first, replay)


def test_only_mask_token_when_fraction_is_one():
    ids = batch(50)
    inputs, labels = Masker(V, MASK, SPECIALS, mlm_probability=0.3, mask_fraction=1.0, random_fraction=0.0)(
        ids, torch.Generator().manual_seed(4))
    selected = labels != IGNORE
    assert (inputs[selected] == MASK).all()
    assert int(selected.sum()) / int(((ids > 3) & (ids != MASK)).sum()) == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="mlm_probability"):
        Masker(V, MASK, SPECIALS, mlm_probability=0)
