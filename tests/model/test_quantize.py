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


def test_compiled_and_eager_int8_layers_agree(default_model_dir):
    """The compiled layer step (inductor's fusion of the quantize/rescale/LayerNorm/GELU passes) against the same
    step run eagerly, on every layout it compiles for: up to float rounding, which can move an activation across an
    int8 step, so a few elements differ by up to a step's effect."""
    from robertaops.model.encoder import Unpadded
    from robertaops.model.quantize import _int8_layer, _layer_step, int8_compiled

    if not int8_compiled():
        pytest.skip("torch.compile is unavailable here: only the eager step runs")
    layer = ro.load(default_model_dir, dtype="int8").runner.model.encoder.layers[0]
    torch.manual_seed(1)
    x = torch.randn(3, 11, layer.attn.query.in_features)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0  # one padded row
    bias = mask.bool()[:, None, None, :]
    unpadded = Unpadded(mask.reshape(-1).nonzero().squeeze(1), 3, 11)
    with torch.inference_mode():
        for args in ((x[:1], None, None), (x, None, None), (x, bias, None), (unpadded.rows(x), bias, unpadded)):
            got, want = _layer_step()(*args, layer.weights()), _int8_layer(*args, layer.weights())
            diff = (got - want).abs()
            assert got.shape == want.shape == args[0].shape
            assert diff.max() < 1e-2 and diff.mean() < 1e-4, (diff.max(), diff.mean())


def compiled_variants() -> set:
    """What this process has compiled of the int8 layer: AOTInductor's libraries by (layout, hidden size), or under
    torch.compile (ROBERTAOPS_COMPILE=jit) dynamo's cache entries."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    from robertaops.model.aot_layer import AotStep
    from robertaops.model.quantize import _int8_layer, _layer_step

    step = _layer_step()
    if isinstance(step, AotStep):
        assert not step.falls_back()
        return {(key[0], key[3]) for key in step._libraries}  # (layout, the QKV weights' shape: the width)
    return set(map(id, _debug_get_cache_entry_list(_int8_layer.__code__)))


def test_warm_up_compiles_every_layout_before_traffic(default_model_dir):
    """After `Model.warm_up`, batches of every layout (one input; equal lengths; a little and a lot of padding) run
    on what it compiled: no compile under the first requests."""
    from robertaops.model.quantize import int8_compiled

    if not int8_compiled():
        pytest.skip("torch.compile is unavailable here: nothing compiles")
    m = ro.load(default_model_dir, dtype="int8")
    torch._dynamo.reset()  # forget what earlier tests compiled for this width (torch.compile)
    m.warm_up()
    compiled = compiled_variants()
    for texts in (["one input"], ["two inputs", "two inputs"], ["a b c d e f g h i j k l m n o p q r s t u v w x",
                                                                 "a b c d e f g h i j k l m n o p q r s t u v w"],
                  TEXTS):
        m.embed(texts)
    assert compiled_variants() == compiled


def test_fused_int8_layer_equals_its_modules_run_one_by_one(default_model_dir):
    """Int8Layer (Q, K, V as one matmul, element-wise passes fused) == the encoder's Layer.forward over the same
    Int8Linear modules, up to float rounding: the fusion changes the schedule, not the arithmetic. A rounding
    difference can move an activation across an int8 step, so now and then one token differs by a step's effect."""
    from robertaops.model.encoder import Layer
    from robertaops.model.quantize import Int8Layer, _layer_step

    layers = ro.load(default_model_dir, dtype="int8").runner.model.encoder.layers
    assert all(isinstance(layer, Int8Layer) for layer in layers)
    assert layers[0].weights().act_floor is not None  # GELU: the fused step scales it from its input (tested below)
    torch.manual_seed(2)
    x = torch.randn(3, 11, layers[0].attn.query.in_features)
    mask = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    mask[1, ..., 7:] = False  # one padded row
    with torch.inference_mode():
        for layer in layers:
            # act_floor None: the activation's scale from its own values, as the unfused modules compute it; and
            # attention in fp32, as the modules run it (bf16 attention is tested below)
            fused = _layer_step()(x, mask, None, layer.weights()._replace(act_floor=None, attn_dtype=torch.float32))
            unfused = Layer.forward(layer, x, mask)
            # per token: equal to float rounding, except where an int8 step flipped (at most one token per layer
            # here), which moves that token's row by up to a few hundredths
            diff = (fused - unfused).abs().amax(-1).flatten()  # (B * T,) largest difference per token
            assert (diff > 1e-4).sum() <= 1 and diff.max() < 5e-2, diff
            x = fused


def test_int8_attention_in_bf16_where_the_cpu_has_it_and_close_to_fp32(default_model_dir, monkeypatch):
    """Attention runs in bf16 on CPUs with AVX512-BF16 or AMX, else fp32; ROBERTAOPS_INT8_ATTENTION=float32 forces
    fp32. Either way the vectors stay within bf16 rounding of each other."""
    from robertaops.model import amx
    from robertaops.model.quantize import Int8Layer, _attention_dtype

    for flags, want in [({"avx512f"}, torch.float32), ({"avx512_bf16"}, torch.bfloat16),
                        ({"amx_bf16", "amx_tile"}, torch.bfloat16), (set(), torch.float32)]:
        monkeypatch.setattr(amx, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert _attention_dtype() == want, flags
    monkeypatch.setenv("ROBERTAOPS_INT8_ATTENTION", "float32")
    assert _attention_dtype() == torch.float32

    m = ro.load(default_model_dir, dtype="int8")
    texts = ["hi", "The cat sat on the mat.", "A much longer sentence about the quarterly results of a company " * 4,
             "Attention in bf16 keeps eight bits of mantissa for the query and key products."]
    reference = ro.load(default_model_dir).embed(texts)  # fp32, normalized
    cos = {}
    for dtype in (torch.float32, torch.bfloat16):
        for layer in m.runner.model.modules():
            if isinstance(layer, Int8Layer):
                layer._weights = layer.weights()._replace(attn_dtype=dtype)
        cos[dtype] = (m.embed(texts) * reference).sum(1)
    # int8 rounding alone costs MiniLM 0.003-0.016 of cosine on these; bf16 attention adds ~0.001 at most
    assert not np.array_equal(cos[torch.float32], cos[torch.bfloat16])
    assert (cos[torch.bfloat16] > cos[torch.float32] - 0.003).all() and cos[torch.bfloat16].min() > 0.98, cos


@pytest.mark.parametrize("name", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh"])
def test_activation_quantized_from_its_input_never_clips(name):
    """The FFN activation's int8 scale comes from its input (max(rowmax(h), floor)) so that the activation is
    computed once: that bound must hold for every activation it is used with, or values would clip. tanh saturates
    at 1, so the bound would waste resolution: it keeps the scale from its own values."""
    from robertaops.model.encoder import ACT_FNS
    from robertaops.model.quantize import _act_floor, _quantize_activated

    act, floor = ACT_FNS[name], _act_floor(ACT_FNS[name])
    if name == "tanh":
        assert floor is None
        return
    x = torch.linspace(-30, 30, 600_001)
    assert (act(x).abs() <= torch.clamp(x, min=floor)).all()
    torch.manual_seed(3)
    h = torch.cat([torch.randn(6, 300) * torch.tensor([[0.05], [0.3], [1.0], [3.0], [10.0], [40.0]]),
                   -torch.rand(2, 300)])  # quiet rows, loud rows, and rows with nothing above zero
    q, scale = _quantize_activated(h, act, floor)
    assert q.dtype == torch.int8 and scale.shape == (8, 1)
    err = (q.float() * scale - act(h)).abs()
    assert (err <= scale * 0.5 + 1e-6).all()  # rounding only: nothing clipped
    assert torch.allclose(scale[3:6].squeeze(1), act(h[3:6]).abs().amax(1) / 127, rtol=2e-3)  # loud rows: tight


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


SHORT = ["yes", "no thanks", "great movie", "terrible", "the plot", "very slow pacing", "loved it", "refund",
         "hello", "open account", "reset password", "weather today", "cheap flights", "why", "not bad at all",
         "dark and moody", "best pizza", "python", "error 404", "call me", "happy birthday", "stock price",
         "fun", "boring ending"]


def test_smoothing_keeps_short_inputs_close_to_fp32(default_model_dir):
    """Inputs of 1-3 words are where per-token int8 loses most (one outlier channel sets a token's scale);
    smoothing the inputs of Q/K/V and FFN in brings them back within 0.99 of fp32, the same at every load."""
    from robertaops.model.quantize import Int8Layer, quantize_int8

    fp32 = ro.load(default_model_dir)
    reference = fp32.embed(SHORT)
    smoothed = ro.load(default_model_dir, dtype="int8")
    plain = ro.load(default_model_dir)
    quantize_int8(plain.runner.model, calibrate=False)  # the scheme before smoothing
    cos_smoothed = (smoothed.embed(SHORT) * reference).sum(1)
    cos_plain = (plain.embed(SHORT) * reference).sum(1)
    assert cos_smoothed.min() > 0.99 and cos_smoothed.mean() > cos_plain.mean() + 1e-3, (cos_smoothed, cos_plain)
    assert cos_plain.min() < 0.99  # the inputs this test is about: without smoothing some fall below
    layer = next(m for m in smoothed.runner.model.modules() if isinstance(m, Int8Layer))
    assert not torch.all(layer.attn.query.smooth == 1) and torch.equal(layer.attn.query.smooth, layer.attn.value.smooth)
    assert not torch.all(layer.ffn_in.smooth == 1)
    assert torch.all(layer.attn.out.smooth == 1) and torch.all(layer.ffn_out.smooth == 1)
    np.testing.assert_array_equal(smoothed.embed(SHORT), ro.load(default_model_dir, dtype="int8").embed(SHORT))


def test_quantized_checkpoint_from_before_smoothing_still_loads(default_model_dir, tmp_path):
    """A checkpoint `robertaops quantize` wrote before smoothing has no `smooth` tensors: it loads with none."""
    from safetensors.torch import load_file, save_file

    from robertaops.model.checkpoint import build_model, save_model
    from robertaops.model.quantize import quantize_int8

    net = ro.load(default_model_dir).runner.model
    quantize_int8(net, calibrate=False)
    net.cfg = net.cfg.with_(hf={**net.cfg.hf, "quantization": {"method": "w8a8-per-token"}})
    save_model(net, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert any(k.endswith(".smooth") for k in tensors)
    save_file({k: v for k, v in tensors.items() if not k.endswith(".smooth")}, tmp_path / "model.safetensors")
    reloaded = build_model(tmp_path)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(ids), net(ids), rtol=0, atol=1e-5)


@pytest.mark.parametrize(("flags", "int8_ok", "expected"), [
    ({"avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}, True, "bfloat16"),  # AMX: bf16, as fast, closer
    ({"avx512_vnni", "avx512_bf16"}, True, "int8"),  # Zen 5: int8 1.1-1.4x bf16
    ({"avx512_vnni", "avx512_bf16"}, False, "bfloat16"),  # no compiler for the int8 kernels
    ({"avx2", "fma"}, False, "float32"),
])
def test_dtype_auto_picks_by_cpu(monkeypatch, flags, int8_ok, expected):
    from robertaops import api

    monkeypatch.setattr(api, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(api, "int8_supported", lambda: int8_ok)
    monkeypatch.setattr(api, "int8_compiled", lambda: int8_ok)
    assert api.auto_dtype("cpu") == expected


def test_dtype_auto_and_bad_dtypes(default_model_dir):
    from robertaops.api import auto_dtype

    assert ro.load(default_model_dir, dtype="auto").dtype == auto_dtype("cpu")
    with pytest.raises(InvalidInputError, match="'int8' or 'auto'"):
        ro.load(default_model_dir, dtype="int4")
    with pytest.raises(InvalidInputError, match="CPU only"):
        ro.load(default_model_dir, dtype="int8", device="cuda")


def test_int8_models_of_three_widths_all_run_compiled(default_model_dir, make_checkpoint):
    """A process serving several int8 models (a rollout, a cascade) compiles every layout for each width:
    AOTInductor one library per (layout, width); torch.compile 4 variants per width, three widths being more than
    dynamo's default limit of 8, past which the rest would run eagerly (2x slower)."""
    from robertaops.model.aot_layer import AotStep
    from robertaops.model.quantize import _layer_step, int8_compiled

    if not int8_compiled():
        pytest.skip("torch.compile is unavailable here: nothing compiles")
    small, _ = make_checkpoint("roberta", hidden_size=64, num_attention_heads=2, intermediate_size=128)
    tiny, _ = make_checkpoint("roberta")  # hidden 32: not a multiple of 64, so torch._int_mm's layout, not AMX's
    torch._dynamo.reset()
    models = [ro.load(path, dtype="int8") for path in (default_model_dir, small, tiny)]
    for m in models:
        m.warm_up()
    compiled = compiled_variants()
    if isinstance(_layer_step(), AotStep):
        shapes = {m.runner.model.encoder.layers[0].weights().qkv[0].shape for m in models}
        assert len(shapes) == 3 and compiled >= {(layout, shape) for layout in ("dense", "masked", "unpadded")
                                                 for shape in shapes}
    else:
        assert len(compiled) == 12  # 3 widths x 4 layouts, none dropped
    ro.load(small, dtype="int8").embed(TEXTS)
    assert compiled_variants() == compiled  # a model loaded again reuses them
