"""int8 (W8A8, per-token activations): outputs close to fp32, a quantized checkpoint round-trips, dtype=auto."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robertaops as ro
from robertaops.errors import InvalidInputError
from robertaops.model.quantize import Int8Linear, _IntMM, _OneDNN, _onednn_exact, int8_supported, is_quantized

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


def test_compiled_and_eager_kernels_agree():
    """The matmul's quantize and rescale bit for bit; the fused LayerNorm and GELU up to float rounding."""
    from robertaops.model.quantize import _backend, _eager, _kernels

    torch.manual_seed(1)
    x, w = torch.randn(37, 64), torch.randint(-127, 128, (48, 64), dtype=torch.int8)
    k, EAGER, backend = _kernels(), _eager(), _backend()
    (q1, s1), (q2, s2) = k["quantize"](x), EAGER["quantize"](x)
    assert torch.equal(q1, q2) and torch.equal(s1, s2)
    acc, ws, b = backend.matmul(q1, backend.pack(w)), torch.rand(48) / 100, torch.rand(48)
    assert torch.equal(k["rescale"](acc, s1, ws, b), EAGER["rescale"](acc, s1, ws, b))
    res, gamma, beta = torch.randn(37, 48), torch.rand(48) + 0.5, torch.randn(48)
    for name, args in (("rescale_add_norm", (res, gamma, beta, 1e-5)),
                       ("rescale_add_norm_quantize", (res, gamma, beta, 1e-5)),
                       ("rescale_act", (torch.nn.functional.gelu,))):
        got, want = k[name](acc, s1, ws, b, *args), EAGER[name](acc, s1, ws, b, *args)
        for g, e in zip(got if isinstance(got, tuple) else [got], want if isinstance(want, tuple) else [want],
                        strict=True):
            if g.dtype in (torch.int8, torch.uint8):  # a value on a rounding boundary may land one step away
                assert (g.int() - e.int()).abs().max() <= 1, name
            else:
                torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.skipif(not _onednn_exact(), reason="this torch build has no oneDNN u8 x s8 matmul")
def test_onednn_backend_sums_what_int_mm_sums():
    """The prepacked oneDNN kernel (u8 activations = int8 + 128, zero point 128) against `torch._int_mm` on the
    same int8 values, at roberta-base's shapes and at the extremes, where the sums pass 2^24 and float rounding
    starts: the same numbers, so the backend changes speed, not embeddings."""
    g = torch.Generator().manual_seed(3)
    for n, k, out in ((1, 64, 48), (16, 768, 2304), (300, 3072, 768)):
        q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
        w = torch.randint(-127, 128, (out, k), dtype=torch.int8, generator=g)
        q[0], w[0], w[1] = 127, 127, -127  # |sum| up to 127 * 127 * k
        got = _OneDNN.matmul((q.int() + 128).to(torch.uint8), _OneDNN.pack(w))
        assert torch.equal(got, _IntMM.matmul(q, _IntMM.pack(w)).float()), (n, k, out)


def test_fused_int8_layer_equals_its_modules_run_one_by_one(default_model_dir):
    """Int8Layer (Q, K, V as one matmul, element-wise passes fused) == the encoder's Layer.forward over the same
    Int8Linear modules, up to float rounding: the fusion changes the schedule, not the arithmetic. A rounding
    difference can move an activation across an int8 step, so a few elements differ by up to a step's effect."""
    from robertaops.model.encoder import Layer
    from robertaops.model.quantize import Int8Layer

    layers = ro.load(default_model_dir, dtype="int8").runner.model.encoder.layers
    assert all(isinstance(layer, Int8Layer) for layer in layers)
    torch.manual_seed(2)
    x = torch.randn(3, 11, layers[0].attn.query.in_features)
    mask = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    mask[1, ..., 7:] = False  # one padded row
    with torch.inference_mode():
        for layer in layers:
            fused, unfused = layer(x, mask), Layer.forward(layer, x, mask)
            diff = (fused - unfused).abs()
            assert diff.max() < 1e-2 and diff.mean() < 1e-4, (diff.max(), diff.mean())
            x = fused


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
