"""The encoder's unpadded path: padded batches run their row-wise work on real tokens only, with the same results."""

from __future__ import annotations

import pytest
import torch

import robertaops as ro
from robertaops.model import encoder as enc
from robertaops.model.encoder import Unpadded
from robertaops.model.quantize import int8_supported

TEXTS = ["short", "A man is playing a guitar on the street while the crowd listens.", "Two words",
         "It was a dark and stormy night; the rain fell in torrents, except at occasional intervals."]


def batch(m, texts):
    """(ids, mask) right-padded by hand, as a caller of the model would build them."""
    seqs = m.tokenizer.ids(texts)
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), m.runner.cfg.pad_token_id)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)], mask[row, : len(s)] = torch.tensor(s), 1
    return ids, mask


def test_rows_and_pad_round_trip():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    unpadded = Unpadded.of(mask)
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    rows = unpadded.rows(x)
    assert rows.shape == (4, 3) and torch.equal(rows, x[mask.bool()])
    back = unpadded.pad(rows, rows + 100)  # (B, T, 2, C), zeros where the mask is 0
    assert back.shape == (2, 4, 2, 3)
    assert torch.equal(back[..., 0, :][mask.bool()], rows) and torch.equal(back[..., 1, :][mask.bool()], rows + 100)
    assert not back[~mask.bool()].any()


def test_unpadding_only_pays_when_there_is_padding_to_skip():
    assert Unpadded.of(torch.ones(4, 10, dtype=torch.long)) is None
    few = torch.ones(4, 10, dtype=torch.long)
    few[0, -1] = 0  # 2.5% padding: the copies would cost more than they save
    assert Unpadded.of(few) is None
    many = few.clone()
    many[1:, 6:] = 0  # 32.5% padding
    assert Unpadded.of(many) is not None


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_unpadded_forward_equals_padded_forward(default_model_dir, monkeypatch, dtype):
    """The same hidden states on every real token (per-row arithmetic: unpadding moves rows, not sums), zeros at
    padding; heads and pooling read only the real tokens."""
    if dtype == "int8" and not int8_supported():
        pytest.skip("this torch build has no CPU int8 matmul")
    m = ro.load(default_model_dir, dtype=dtype)
    ids, mask = batch(m, TEXTS)
    assert Unpadded.of(mask) is not None, "the inputs must be padded enough to take the unpadded path"
    with torch.inference_mode():
        unpadded = m.runner.model.encoder(ids, mask)
        monkeypatch.setattr(enc, "MIN_PADDING_TO_UNPAD", 1.1)  # never unpad
        assert Unpadded.of(mask) is None
        padded = m.runner.model.encoder(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(unpadded[real], padded[real], rtol=0, atol=1e-5)
    assert not unpadded[~real].any()


def test_training_mode_keeps_the_padded_layout(default_model_dir, monkeypatch):
    """Training runs dropout over (B, T, H): unpadding is an inference path."""
    m = ro.load(default_model_dir)
    ids, mask = batch(m, TEXTS)
    calls = []
    monkeypatch.setattr(Unpadded, "of", classmethod(lambda cls, mask: calls.append(mask)))
    model = m.runner.model.encoder
    model.train()
    try:
        model(ids, mask)
    finally:
        model.eval()
    assert calls == []
    with torch.inference_mode():
        model(ids, mask)
    assert len(calls) == 1
