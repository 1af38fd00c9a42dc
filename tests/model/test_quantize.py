"""int8 (W8A8, per-token activations): outputs close to fp32, a quantized checkpoint round-trips, dtype=auto."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robertaops as ro
from robertaops.errors import InvalidInputError
from robertaops.model.quantize import Int8Linear, int8_supported, is_quantized

pytestmark = pytest.mark.skipif(not int8_supported(), reason="this torch build has no CPU int8 matmul")

TEXTS = ["A man is playing a guitar on the street.", "The stock market fell sharply after the announcement.",
         "It was a dark and stormy night; the rain fell in torrents.", "short", "Ça marche aussi en français."]


def test_int8_linear_matches_float_within_quantization_error():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    q = Int8Linear.from_linear(linear)
    x = torch.randn(3, 7, 64)
    with torch.no_grad():
        exact, approx = linear(x), q(x)
    assert approx.shape == exact.shape == (3, 7, 48)
    # Each of the 64 products carries <= half a step of error on both operands: a few parts in a thousand overall.
    assert (approx - exact).abs().max() < 0.02 * exact.abs().max()
    assert torch.nn.functional.cosine_similarity(approx.flatten(), exact.flatten(), dim=0) > 0.9999


def test_compiled_and_eager_kernels_agree_bit_for_bit():
    from robertaops.model.quantize import _kernels, _quantize_tokens, _rescale

    torch.manual_seed(1)
    x, w = torch.randn(37, 64), torch.randint(-127, 128, (64, 48), dtype=torch.int8)
    quant, rescale = _kernels()
    (q1, s1), (q2, s2) = quant(x), _quantize_tokens(x)
    assert torch.equal(q1, q2) and torch.equal(s1, s2)
    acc, ws, b = torch._int_mm(q1, w), torch.rand(48), torch.rand(48)
    assert torch.equal(rescale(acc, s1, ws, b), _rescale(acc, s1, ws, b))


def test_int8_embeddings_close_to_fp32(default_model_dir):
    fp32, int8 = ro.load(default_model_dir), ro.load(default_model_dir, dtype="int8")
    assert int8.dtype == "int8" and is_quantized(int8.runner.model) and not is_quantized(fp32.runner.model)
    a, b = fp32.embed(TEXTS), int8.embed(TEXTS)
    cosines = (a * b).sum(1)  # both L2-normalised
    assert cosines.min() > 0.99, cosines
    assert np.abs(a - b).max() > 1e-5  # it really is another path, not fp32 under another name


def test_quantized_checkpoint_round_trips(default_model_dir, tmp_path):
    from robertaops.model.checkpoint import build_model, save_model

    int8 = ro.load(default_model_dir, dtype="int8")
    net = int8.runner.model
    cfg = net.cfg.with_(hf={**net.cfg.hf, "quantization": {"method": "w8a8-per-token"}})
    net.cfg = cfg
    save_model(net, tmp_path)
    reloaded = build_model(tmp_path)
    assert is_quantized(reloaded)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert k == k2 and v.dtype == v2.dtype and torch.equal(v, v2), k
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.inference_mode():
        assert torch.equal(net(ids), reloaded(ids))


def test_dtype_auto_and_bad_dtypes(default_model_dir):
    from robertaops.api import _cpu_has_bf16
    from robertaops.model.quantize import int8_compiled

    expected = "int8" if int8_compiled() else "bfloat16" if _cpu_has_bf16() else "float32"
    assert ro.load(default_model_dir, dtype="auto").dtype == expected
    with pytest.raises(InvalidInputError, match="'int8' or 'auto'"):
        ro.load(default_model_dir, dtype="int4")
    with pytest.raises(InvalidInputError, match="CPU only"):
        ro.load(default_model_dir, dtype="int8", device="cuda")
