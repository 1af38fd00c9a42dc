"""int8 inference: every Linear of the encoder as W8A8 — int8 weights per output channel, int8 activations per token.

Why this scheme (measured on all-MiniLM-L6-v2, 64 novel paragraphs, mean-pooled embeddings vs fp32):
- torch's dynamic quantization (`quantize_dynamic`) scales activations per *tensor*: one outlier token flattens
  everyone else's resolution, and cosine to fp32 falls to 0.92 (0.97 with per-channel weights);
- scaling each token's activations by its own max keeps cosine >= 0.994 (mean 0.997) with every Linear in int8;
  but inputs of 1-3 words fell to 0.979 (19% below 0.99), Q/K/V's quantization costing the most;
- smoothing the inputs of Q/K/V and FFN in (`smoothing.py`, SmoothQuant's per-channel scales, calibrated on random
  token ids) brings those to >= 0.993 and SST-2 sentences from >= 0.983 to >= 0.994 (benchmarks/int8_accuracy.py).
The matmul (int8 x int8 -> int32, exact) runs on AMX tiles where the CPU has them (`amx.py`, 1.8-3.2x faster there),
else `torch._int_mm` (oneDNN's VNNI kernels); then one fused rescale: y = acc * (s_token * s_channel) + bias.
Embeddings, LayerNorm and heads stay in fp32; attention runs in bf16 where the CPU has it (`_attention_dtype`).

Each encoder layer runs as `Int8Layer`: the same modules, stepped through as one function (`_int8_layer`), compiled
as a whole, so that every element-wise pass rides on a matmul's input or output — Q, K and V as one matmul on one
quantized input; the output projection's rescale, residual add, LayerNorm and the FFN input's quantization as one
loop; the FFN's rescale, activation and quantization as another; the last rescale, residual and LayerNorm as a third.

A quantized checkpoint (`robertaops quantize`) stores `<linear>.qweight` (int8, (out, in)), `<linear>.wscale`
(fp32, (out,)) and `<linear>.smooth` (fp32, (in,); absent from checkpoints written before it: ones) instead of
`<linear>.weight`, and `"quantization": {"method": "w8a8-per-token"}` in config.json.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import amx
from .aot_layer import AotStep
from .config import EncoderConfig
from .encoder import ACT_FNS, Encoder, Layer, Unpadded
from .smoothing import smoothing

METHOD = "w8a8-per-token"


def _quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float -> (out, in) int8 and (out,) fp32 scales, symmetric per output channel."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0  # (out,)
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


class Int8Linear(nn.Module):
    """A Linear whose weights are int8 and whose input is quantized per token on the fly."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("wscale", torch.ones(out_features))
        # Per input channel, what the input is multiplied by before it is quantized; the weights were quantized
        # from W * (1 / smooth) per column, so the product is unchanged (see smoothing.py). Ones: none.
        self.register_buffer("smooth", torch.ones(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._qweight_t: torch.Tensor | None = None  # (in, out) contiguous, the layout _int_mm wants

    @classmethod
    def from_linear(cls, linear: nn.Linear, smooth: torch.Tensor | None = None) -> Int8Linear:
        """`smooth` (in,): multiply inputs by it at run time, and weights by its inverse now."""
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        weight = linear.weight.detach().float()
        if smooth is not None:
            q.smooth = smooth.detach().float().clone()
            weight = weight / q.smooth
        q.qweight, q.wscale = _quantize_weight(weight)
        if linear.bias is not None:
            q.bias.data = linear.bias.detach().float().clone()
        return q

    def weight_t(self) -> torch.Tensor:
        if self._qweight_t is None or self._qweight_t.device != self.qweight.device:
            self._qweight_t = self.qweight.t().contiguous()
        return self._qweight_t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        q, scale = _quantize_tokens(x.reshape(-1, shape[-1]) * self.smooth)  # (N, in) int8, (N, 1) per token
        acc = torch._int_mm(q, self.weight_t())  # (N, out) int32, exact
        y = _rescale(acc, scale, self.wscale, self.bias)  # (N, out) float32
        return y.reshape(*shape[:-1], self.out_features)  # (..., out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._qweight_t = None  # new weights: the cached transpose is stale
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8 per-token"


class LayerWeights(NamedTuple):
    """An Int8Layer's tensors as its fused step takes them: each matmul's (int8 weights in `_mm`'s layout,
    per-channel scales, bias), Q, K and V stacked into one; each LayerNorm's (gain, bias, eps); the head count and
    the activation."""

    qkv: tuple
    out: tuple
    attn_norm: tuple
    ffn_in: tuple
    ffn_out: tuple
    ffn_norm: tuple
    heads: int
    act: Callable
    act_floor: float | None  # see _quantize_activated; None: act(h) is quantized from its own row max
    attn_dtype: torch.dtype  # what attention computes in: see _attention_dtype
    smooth: tuple  # (QKV's, FFN in's) Int8Linear.smooth: what their inputs are multiplied by before quantizing


class Int8Layer(nn.Module):
    """An encoder `Layer` whose Linears are Int8Linear, run as one fused step, `_int8_layer` (same modules, same
    state dict)."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.attn, self.attn_norm, self.ffn_in, self.ffn_out = layer.attn, layer.attn_norm, layer.ffn_in, layer.ffn_out
        # `dropout`, `hidden_act` and `ffn_hidden` are unused here (inference only) but kept so that `Layer.forward`
        # also runs on this module: the unfused reference the fused step is tested against.
        self.ffn_norm, self.act, self.dropout = layer.ffn_norm, layer.act, layer.dropout
        self.hidden_act = layer.hidden_act
        self._weights: LayerWeights | None = None

    ffn_hidden = Layer.ffn_hidden

    def weights(self) -> LayerWeights:
        """Gathered once, at the first forward, and kept."""
        if self._weights is None:
            attn = self.attn
            parts = attn.query, attn.key, attn.value
            qkv = (_mm_weight(torch.cat([p.qweight for p in parts])), torch.cat([p.wscale for p in parts]),
                   torch.cat([p.bias for p in parts]))
            self._weights = LayerWeights(
                qkv, (_mm_weight(attn.out.qweight), attn.out.wscale, attn.out.bias),
                (self.attn_norm.weight, self.attn_norm.bias, self.attn_norm.eps),
                *((_mm_weight(m.qweight), m.wscale, m.bias) for m in (self.ffn_in, self.ffn_out)),
                (self.ffn_norm.weight, self.ffn_norm.bias, self.ffn_norm.eps), attn.n_heads, self.act,
                _act_floor(self.act), _attention_dtype(), (attn.query.smooth, self.ffn_in.smooth))
            # Static to torch.compile: its sizes are the model's, not the batch's. Left dynamic, a weight dimension
            # that happens to equal a batch dimension shares its symbol, and a shape check on the weight then fixes
            # the batch dimension too (AMX tiles of a 384-wide model have 24 rows of tiles: sequences of 24 tokens
            # compiled a variant of their own).
            for part in self._weights:
                for t in part if isinstance(part, tuple) else ():
                    if isinstance(t, torch.Tensor):
                        torch._dynamo.mark_static(t)
        return self._weights

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None, unpadded: Unpadded | None = None):
        """x (B, T, H), or (R, H) real tokens when `unpadded` says where they sit -> the same shape."""
        return _layer_step()(x, attn_bias, unpadded, self.weights())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._weights = None  # new weights: the gathered copies are stale
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _mm_weight(qweight: torch.Tensor) -> torch.Tensor:
    """(out, in) int8 weights in the layout of the matmul that will run them: AMX tiles (4-D) where that kernel runs
    and the shape fits it, else (in, out) for torch._int_mm."""
    if _on_amx(qweight):
        return amx.pack(qweight)
    return qweight.t().contiguous()


def int8_matmul(model: nn.Module) -> str | None:
    """Which matmul runs `model`'s int8 layers: "amx" or "int_mm" (the first layer's shapes decide, as in
    `_mm_weight`); None for a model that is not int8."""
    layer = next((m for m in model.modules() if isinstance(m, Int8Layer)), None)
    if layer is None:
        return None
    return "amx" if _on_amx(layer.ffn_in.qweight) else "int_mm"  # if (I, H) fits, so do (3H, H) and (H, I)


def _on_amx(qweight: torch.Tensor) -> bool:
    return amx.available() and amx.fits(*qweight.shape)


def _mm(q8: torch.Tensor, weight: torch.Tensor, as_float: bool = False) -> torch.Tensor:
    """(N, in) int8 x weights from `_mm_weight` -> (N, out) int32, the same sums either way. The layout decides,
    and a tensor's rank is static to torch.compile: no branch at run time. `as_float`: the AMX kernel hands the sums
    back as float32 (the same values `_rescale` would convert them to; see amx_int8.c for why the QKV sums)."""
    return amx.matmul(q8, weight, as_float) if weight.dim() == 4 else torch._int_mm(q8, weight)


def _int8_layer(x: torch.Tensor, attn_bias: torch.Tensor | None, unpadded: Unpadded | None, w: LayerWeights):
    """One post-LN encoder layer in int8, every element-wise pass riding on a matmul's input or output: quantize ->
    QKV -> attention (fp32) -> quantize -> output projection + residual + LayerNorm + quantize -> FFN in + activation
    -> quantize -> FFN out + residual + LayerNorm. x (B, T, H) or (R, H) -> the same shape."""
    shape, H = x.shape, x.shape[-1]
    x = x.reshape(-1, H)  # (N, H): every token, or the real ones
    q8, s = _quantize_tokens(x * w.smooth[0])  # (N, H) int8, (N, 1)
    qkv = _rescale(_mm(q8, w.qkv[0], as_float=True), s, *w.qkv[1:])  # (N, 3H)
    qkv = qkv.to(w.attn_dtype)  # (rides on the rescale: no pass of its own)
    qkv = qkv.view(*shape[:2], 3 * H) if unpadded is None else unpadded.pad(qkv)  # (B, T, [1,] 3H)
    B, T, D = qkv.shape[0], qkv.shape[1], H // w.heads
    q, key, v = qkv.view(B, T, 3, w.heads, D).transpose(1, 3).unbind(2)  # each (B, heads, T, D)
    y = F.scaled_dot_product_attention(q, key, v, attn_mask=attn_bias, scale=1.0 / math.sqrt(D))
    y = y.transpose(1, 2).reshape(B, T, H)
    y = y.reshape(-1, H) if unpadded is None else unpadded.rows(y)  # (N, H)
    q8, s = _quantize_tokens(y)
    x = _rescale_add_norm(_mm(q8, w.out[0]), s, *w.out[1:], x, *w.attn_norm)  # (N, H)
    q8, s = _quantize_tokens(x * w.smooth[1])
    h = _rescale(_mm(q8, w.ffn_in[0]), s, *w.ffn_in[1:])  # (N, I), before the activation
    q8, s = _quantize_tokens(w.act(h)) if w.act_floor is None else _quantize_activated(h, w.act, w.act_floor)
    x = _rescale_add_norm(_mm(q8, w.ffn_out[0]), s, *w.ffn_out[1:], x, *w.ffn_norm)
    return x.view(shape)


def _attention_dtype() -> torch.dtype:
    """bfloat16 where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), else float32.

    Attention is the int8 layer's one matmul pair left in floating point, and at 256 tokens it took as long as the
    four int8 matmuls: fp32 SDPA ran 130 GFLOP/s at 8 x 256 tokens, bf16 390 (Xeon with AMX, 2 threads). Q, K and V
    in bf16 cost the int8 path's vectors little next to its int8 rounding (benchmarks/RESULTS.md)."""
    if os.environ.get("ROBERTAOPS_INT8_ATTENTION") == "float32":
        return torch.float32
    return torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & amx.cpu_flags() else torch.float32


def _quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, in) float -> (N, in) int8 and (N, 1) fp32 scales, symmetric per row."""
    x = x.float()
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / 127.0
    return _to_int8(x, scale), scale


def _to_int8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x / scale rounded to int8. Both callers take the scale from a bound on the row's magnitude (its max / 127), so
    the quotient is within [-127, 127] and a clamp would change nothing. Without one, inductor's fused GELU + quantize
    loop ran 1.07-1.16x faster alone (16 and 2048 x 3072, the same bytes out; the clamp's NaN-aware min/max were
    ~20% of its samples under perf), and roberta-base's `embed` 1.01-1.03x, within this machine's noise."""
    return (x / scale).round().to(torch.int8)


# Activations with |act(x)| <= max(x, floor) everywhere: each is <= x above zero and >= -floor below (GELU's minimum
# is -0.16997, its tanh approximation's -0.17004, near x = -0.75). tanh is not among them: it saturates at 1.
_ACT_FLOORS = {"gelu": 0.171, "gelu_new": 0.171, "gelu_pytorch_tanh": 0.171, "relu": 0.0}


def _act_floor(act: Callable) -> float | None:
    return next((floor for name, floor in _ACT_FLOORS.items() if ACT_FNS[name] is act), None)


def _quantize_activated(h: torch.Tensor, act: Callable, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """act(h) quantized per row, its scale taken from h: max(rowmax(h), floor) >= max |act(h)|, so nothing clips,
    and the activation (erf, for GELU) is computed once. Scaled from its own values, fused code computes it twice:
    once for the row's max, once for the values (one layer 3-7% slower at 8 x 256 and 32 x 48 tokens, measured).
    The bound is within 0.2% of the row's true max once that max passes 3 (GELU(3) = 2.996)."""
    scale = h.amax(dim=1, keepdim=True).clamp_min(max(floor, 1e-8)) / 127.0
    return _to_int8(act(h), scale), scale


def _rescale(acc: torch.Tensor, scale: torch.Tensor, wscale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = acc.float() * scale * wscale  # (N, out)
    return y + bias if bias is not None else y


def _rescale_add_norm(acc, scale, wscale, bias, residual, weight, beta, eps: float) -> torch.Tensor:
    """LayerNorm(rescaled matmul + residual): the end of a post-LN sub-block."""
    y = _rescale(acc, scale, wscale, bias) + residual  # (N, H)
    return F.layer_norm(y, (y.shape[-1],), weight, beta, eps)


_LAYER_STEP: Callable | None = None
VARIANTS = 64  # compiled variants of the int8 layer a process may keep under torch.compile (see _layer_step)


def _layer_step() -> Callable:
    """`_int8_layer`, compiled: ahead of time by AOTInductor (`aot_layer.AotStep`) where that works, else by
    torch.compile, else the eager function. Compiled, inductor fuses each matmul's element-wise passes into one loop
    and runs the whole layer as C++. Eager, the element-wise passes cost more than the matmuls (a 2048x768 -> 3072
    Linear: 34.6 ms eager, 18.9 ms fused, the int8 matmul alone 11.2 ms). AOTInductor's library is called with one
    ctypes call per layer, without the GIL (two server workers run side by side) and without torch.compile's Python
    per call (a tiny layer: 65 against 129 us per call): `embed` 1.41-1.43x faster than with torch.compile's layer
    at batch 1, 1.02-1.07x on batches, an int8 server 1.86x (benchmarks/RESULTS.md). Fused with its quantization,
    the GELU is computed twice (once for the row's max, once for the values: 8.7 against 4.5 ms as two kernels at
    2048 x 3072, measured); telling inductor to keep the values instead (`realize_opcount_threshold` 4-12) measured
    within the noise, so it is left to inductor.

    Each candidate is tried on a tiny layer first (`_probe`), so that a missing compiler shows now and not mid-batch.
    `ROBERTAOPS_COMPILE=0` skips compiling; `ROBERTAOPS_COMPILE=jit` skips AOTInductor (torch.compile's C++
    wrapper, then its Python wrapper, which holds the GIL between kernels). Under torch.compile, dynamo compiles a
    variant per model width and per input layout, and past its default limit of 8 a process serving two int8
    models (a rollout) would run the rest eagerly, 2x slower (measured), so the limit is raised to VARIANTS."""
    global _LAYER_STEP
    if _LAYER_STEP is None:
        _LAYER_STEP = _int8_layer
        mode = os.environ.get("ROBERTAOPS_COMPILE", "1")
        candidates = [] if mode == "0" else [
            *([("AOTInductor", lambda: AotStep(fallback=_int8_layer))] if mode != "jit" else []),
            ("torch.compile (C++ wrapper)", lambda: _jit({"cpp_wrapper": True})),
            ("torch.compile", lambda: _jit({}))]
        for name, make in candidates:
            try:
                step = make()
                _probe(step)
                if isinstance(step, AotStep) and step.falls_back():
                    raise RuntimeError("the probe's layer did not compile")
                _LAYER_STEP = step
                break
            except Exception as exc:  # noqa: BLE001 - no compiler, an unsupported platform: eager is correct too
                warnings.warn(f"int8: {name} unavailable ({type(exc).__name__}); falling back", stacklevel=2)
    return _LAYER_STEP


def _jit(options: dict) -> Callable:
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, VARIANTS)
    return torch.compile(_int8_layer, dynamic=True, options=options)


def _probe(step: Callable) -> None:
    """Run `step` on a tiny random int8 layer (hidden 64, 2 heads, FFN 128), built like a real one, in inference
    mode: a padded batch of 2, so that a compiler failure shows here. The caller's random state is left as it was.
    Its widths are multiples of 64, so it runs the matmul real models will (the AMX op where there is AMX)."""
    with torch.random.fork_rng(devices=[]):
        layer = _tiny_int8_encoder().layers[0]  # outside inference mode, like a loaded model's parameters
        x, mask = torch.randn(2, 5, 64), torch.ones(2, 1, 1, 5, dtype=torch.bool)
        mask[1, ..., 3:] = False
        with torch.inference_mode():
            step(x, mask, None, layer.weights())


def _tiny_int8_encoder() -> Encoder:
    cfg = EncoderConfig(vocab_size=8, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                        num_hidden_layers=1)
    return quantize_int8(Encoder(cfg), calibrate=False)


def int8_compiled() -> bool:
    """True when the fused (compiled) int8 layer is in use, not the slower eager fallback."""
    return _layer_step() is not _int8_layer


def int8_layer_kind() -> str:
    """What runs the int8 layers in this process: "aot" (AOTInductor's libraries), "aot, partly eager" (some layout
    failed to compile), "torch.compile", or "eager" (nothing compiled: no C++ compiler, or ROBERTAOPS_COMPILE=0)."""
    step = _layer_step()
    if isinstance(step, AotStep):
        return "aot, partly eager" if step.falls_back() else "aot"
    return "eager" if step is _int8_layer else "torch.compile"


def encoder_linears(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every Linear inside the encoder's layers (heads keep full precision)."""
    encoder = getattr(model, "encoder", model)
    return [(parent, name) for parent in encoder.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear)]


def quantize_int8(model: nn.Module, calibrate: bool = True) -> nn.Module:
    """Replace the encoder's Linears with Int8Linear and its layers with Int8Layer, in place (the model must be
    float32); returns the model. `calibrate`: smooth the inputs of Q/K/V and of the FFN's first Linear
    (`smoothing`); off where the weights are about to be overwritten (a quantized checkpoint being loaded)."""
    smooth = smoothing(model) if calibrate else {}
    for parent, name in encoder_linears(model):
        linear = getattr(parent, name)
        setattr(parent, name, Int8Linear.from_linear(linear, smooth.get(id(linear))))
    layers = getattr(model, "encoder", model).layers
    for i, layer in enumerate(layers):
        layers[i] = Int8Layer(layer)
    return model


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


def int8_supported() -> bool:
    """True when this torch build runs int8 matmuls on the CPU (oneDNN); checked once on a tiny input."""
    try:
        torch._int_mm(torch.ones(32, 32, dtype=torch.int8), torch.ones(32, 32, dtype=torch.int8))
        return True
    except (RuntimeError, AttributeError):
        return False
