"""SmoothQuant's per-channel input scales for the int8 path (model/quantize.py), calibrated without data.

Why: the int8 path quantizes each token's activations with one scale, set by its largest channel, and a few
channels of a LayerNorm's output run far larger than the rest (its gains): the other channels keep few int8 steps.
On all-MiniLM-L6-v2, 1-3-word inputs fell to cosine 0.979 to fp32 (19% of them below 0.99), Q/K/V's quantization
costing the most. SmoothQuant (Xiao et al., 2023) divides input channel j by s_j and multiplies the weights'
column j by it, s_j = sqrt(max |x_j| / max |W_:j|): the outliers' range moves into the weights, where each output
channel has its own scale. The input maxima come from one fp32 pass over random token ids: no data needed, the
same scales at every load (fixed seed), and they measured as good as calibrating on real text (benchmarks/
RESULTS.md, twelfth session: 1-3 words min cosine 0.979 -> 0.993, SST-2 sentences 0.983 -> 0.994).
"""

from __future__ import annotations

import torch
from torch import nn

# 16 to 128 random sequences gave the same cosines to fp32 within 7e-4 (MiniLM); each costs load time (roberta-base:
# ~17 ms per sequence of ~21 tokens).
CALIBRATION_SEQUENCES = 32
SMOOTHING_ALPHA = 0.5


def smoothing(model: nn.Module) -> dict[int, torch.Tensor]:
    """What each input channel of the Linears after each LayerNorm (Q, K, V and FFN in) is multiplied by before
    it is quantized (1 / s), keyed by id(Linear); the caller divides those Linears' weight columns by it. `model`:
    an encoder, or a model with one, in float32 with its plain Linears."""
    encoder = getattr(model, "encoder", model)
    cfg = encoder.cfg
    targets = [(layer.attn.query, (layer.attn.query, layer.attn.key, layer.attn.value)) for layer in encoder.layers]
    targets += [(layer.ffn_in, (layer.ffn_in,)) for layer in encoder.layers]
    maxima: dict[int, torch.Tensor] = {}

    def record(module, inputs):
        x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
        maxima[id(module)] = torch.maximum(maxima[id(module)], x) if id(module) in maxima else x

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 41, (CALIBRATION_SEQUENCES,), generator=g)
    low = min(1000, cfg.vocab_size // 10)  # past the specials and BERT's [unused] ids
    ids = torch.randint(low, cfg.vocab_size, (CALIBRATION_SEQUENCES, int(lengths.max())), generator=g)
    mask = (torch.arange(ids.shape[1]) < lengths[:, None]).long()
    ids = ids.masked_fill(mask == 0, cfg.pad_token_id)
    hooks = [first.register_forward_pre_hook(record) for first, _ in targets]
    try:
        with torch.inference_mode():
            encoder(ids, mask)
    finally:
        for h in hooks:
            h.remove()
    smooth = {}
    for first, linears in targets:
        w = torch.stack([lin.weight.detach().float().abs().amax(0) for lin in linears]).amax(0).clamp_min(1e-5)
        s = maxima[id(first)].float().clamp_min(1e-5) ** SMOOTHING_ALPHA / w ** (1 - SMOOTHING_ALPHA)
        s = s / s.log().mean().exp()  # geometric mean 1: the int8 scales carry the magnitude either way
        for lin in linears:
            smooth[id(lin)] = 1.0 / s  # what inputs are multiplied by
    return smooth
