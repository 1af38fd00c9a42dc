"""SmoothQuant's calibration (model/smoothing.py): scales follow the inputs' outlier channels, without data."""

from __future__ import annotations

import torch

from robertaops.model.config import EncoderConfig
from robertaops.model.encoder import Encoder
from robertaops.model.smoothing import smoothing


def test_an_outlier_channel_is_scaled_down_and_the_scales_are_reproducible():
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=300, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                        num_hidden_layers=2)
    enc = Encoder(cfg).eval()
    with torch.no_grad():
        enc.embeddings.norm.weight[5] = 40.0  # layer 0's Q/K/V input: channel 5 runs ~40x the others
        enc.layers[1].attn_norm.weight[9] = 25.0  # layer 1's FFN input: channel 9
    scales = smoothing(enc)
    q0, k0, v0, ffn1 = (enc.layers[0].attn.query, enc.layers[0].attn.key, enc.layers[0].attn.value,
                        enc.layers[1].ffn_in)
    assert set(scales) == {id(lin) for layer in enc.layers for lin in (layer.attn.query, layer.attn.key,
                                                                       layer.attn.value, layer.ffn_in)}
    assert torch.equal(scales[id(q0)], scales[id(k0)]) and torch.equal(scales[id(q0)], scales[id(v0)])
    for multiplier, outlier in ((scales[id(q0)], 5), (scales[id(ffn1)], 9)):
        assert multiplier.argmin() == outlier and multiplier[outlier] < 0.5 * multiplier.median()
        torch.testing.assert_close(multiplier.log().mean(), torch.tensor(0.0), atol=1e-5, rtol=0)  # geometric mean 1
    again = smoothing(enc)
    assert all(torch.equal(scales[k], again[k]) for k in scales)
    assert not enc.layers[0].attn.query._forward_pre_hooks  # the calibration hooks are gone
