"""int8 inference: every Linear of the encoder as W8A8 — int8 weights per output channel, int8 activations per token.

Why this scheme (measured on all-MiniLM-L6-v2, 64 novel paragraphs, mean-pooled embeddings vs fp32):
- torch's dynamic quantization (`quantize_dynamic`) scales activations per *tensor*: one outlier token flattens
  everyone else's resolution, and cosine to fp32 falls to 0.92 (0.97 with per-channel weights);
- scaling each token's activations by its own max keeps cosine >= 0.994 (mean 0.997) with every Linear in int8.
The matmul is oneDNN's u8 x s8 kernel on weights prepacked once (`_OneDNN`; `torch._int_mm` where that is missing),
then one fused rescale: y = acc * (s_token * s_channel) + bias. Embeddings, LayerNorm, attention softmax and heads
stay in fp32.

Each encoder layer runs as `Int8Layer`: the same modules, stepped through so that every element-wise pass rides on
a matmul's input or output — Q, K and V as one matmul on one quantized input; the output projection's rescale,
residual add, LayerNorm and the FFN input's quantization as one kernel; the FFN's rescale and activation as
another; the last rescale, residual and LayerNorm as a third.

A quantized checkpoint (`robertaops quantize`) stores `<linear>.qweight` (int8, (out, in)) and `<linear>.wscale`
(fp32, (out,)) instead of `<linear>.weight`, and `"quantization": {"method": "w8a8-per-token"}` in config.json.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import Layer, Unpadded

METHOD = "w8a8-per-token"


def _quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) float -> (out, in) int8 and (out,) fp32 scales, symmetric per output channel."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-8) / 127.0  # (out,)
    return torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8), scale


class _IntMM:
    """`torch._int_mm`: int8 x int8 -> int32 on weights stored (in, out). oneDNN's generic GEMM underneath, which
    repacks the weights into its blocked layout on every call."""

    name, zero_point, dtype = "int_mm", 0, torch.int8

    @staticmethod
    def pack(qweight: torch.Tensor) -> torch.Tensor:
        return qweight.t().contiguous()  # (in, out)

    @staticmethod
    def matmul(q: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        return torch._int_mm(q, packed)  # (N, out) int32


class _OneDNN:
    """oneDNN's `qlinear_pointwise` on weights prepacked once into its VNNI layout: 1.45x `_int_mm` on 16 tokens,
    1.07-1.10x on 128-512, level from 2048 (measured on roberta-base's 48 Linears, weights streamed from memory as
    in a forward pass). Its fast kernel takes u8 activations (s8 ones fall to a reference loop ~1000x slower), so a
    token's int8 values are stored as q + 128 and declared with zero point 128: the products summed are the same
    integers. Scales are passed as 1, so the output is the int32 accumulator as float32 (the same rounding as the
    rescale's own int -> float), and the per-token rescale stays in our fused kernels."""

    name, zero_point, dtype = "onednn", 128, torch.uint8

    @staticmethod
    def pack(qweight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = qweight.shape[0]
        return (torch.ops.onednn.qlinear_prepack(qweight.contiguous(), None), torch.ones(out),
                torch.zeros(out, dtype=torch.int32))

    @staticmethod
    def matmul(q: torch.Tensor, packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        weight, ones, zeros = packed
        return torch.ops.onednn.qlinear_pointwise(q, 1.0, 128, weight, ones, zeros, None, 1.0, 0, torch.float32,
                                                  "none", [], "")  # (N, out) float32


_BACKEND: type[_IntMM] | type[_OneDNN] | None = None


def _backend() -> type[_IntMM] | type[_OneDNN]:
    """The int8 matmul for this process: oneDNN's prepacked kernel when it is present and exact here, else
    `_int_mm`. ROBERTAOPS_INT8_MATMUL=int_mm|onednn forces one (benchmarks compare them)."""
    global _BACKEND
    if _BACKEND is None:
        wanted = os.environ.get("ROBERTAOPS_INT8_MATMUL", "auto")
        if wanted not in ("auto", "onednn", "int_mm"):
            raise ValueError(f"ROBERTAOPS_INT8_MATMUL must be auto, onednn or int_mm, got {wanted!r}")
        _BACKEND = _IntMM if wanted == "int_mm" else _OneDNN if wanted == "onednn" or _onednn_exact() else _IntMM
    return _BACKEND


def _onednn_exact() -> bool:
    try:
        g = torch.Generator().manual_seed(0)
        q = torch.randint(-127, 128, (5, 40), dtype=torch.int8, generator=g)
        w = torch.randint(-127, 128, (24, 40), dtype=torch.int8, generator=g)
        got = _OneDNN.matmul((q.int() + 128).to(torch.uint8), _OneDNN.pack(w))
        return torch.equal(got, _IntMM.matmul(q, _IntMM.pack(w)).float())
    except (RuntimeError, AttributeError):  # an op this torch build lacks, or an unsupported CPU
        return False


class Int8Linear(nn.Module):
    """A Linear whose weights are int8 and whose input is quantized per token on the fly."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("wscale", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._packed = None  # the weights in the matmul backend's own layout, made at the first forward

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        q.qweight, q.wscale = _quantize_weight(linear.weight)
        if linear.bias is not None:
            q.bias.data = linear.bias.detach().float().clone()
        return q

    def packed(self):
        if self._packed is None:
            self._packed = _backend().pack(self.qweight)
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        k = _kernels()
        q, scale = k["quantize"](x.reshape(-1, shape[-1]))  # (N, in) int8 (or u8, +128), (N, 1) one scale per token
        acc = _backend().matmul(q, self.packed())  # (N, out) exact integer sums
        y = k["rescale"](acc, scale, self.wscale, self.bias)  # (N, out) float32
        return y.reshape(*shape[:-1], self.out_features)  # (..., out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._packed = None  # new weights: the packed copy is stale
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8 per-token"


class Int8Layer(nn.Module):
    """An encoder `Layer` whose Linears are Int8Linear, run in fused int8 steps (same modules, same state dict)."""

    def __init__(self, layer: Layer):
        super().__init__()
        self.attn, self.attn_norm, self.ffn_in, self.ffn_out = layer.attn, layer.attn_norm, layer.ffn_in, layer.ffn_out
        # `dropout` is unused here (inference only) but kept so that `Layer.forward` also runs on this module: the
        # unfused reference the fused steps are tested against.
        self.ffn_norm, self.act, self.dropout = layer.ffn_norm, layer.act, layer.dropout
        self._qkv = None

    def _fused_qkv(self):
        """Q, K and V stacked: the (3H, in) int8 weights packed, (3H,) scales, (3H,) biases — one matmul, not three."""
        if self._qkv is None:
            parts = self.attn.query, self.attn.key, self.attn.value
            self._qkv = (_backend().pack(torch.cat([p.qweight for p in parts])), torch.cat([p.wscale for p in parts]),
                         torch.cat([p.bias for p in parts]))
        return self._qkv

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None, unpadded: Unpadded | None = None):
        """x (B, T, H), or (R, H) real tokens when `unpadded` says where they sit -> the same shape."""
        k, attn, matmul = _kernels(), self.attn, _backend().matmul
        shape, H = x.shape, x.shape[-1]
        x = x.reshape(-1, H)  # (N, H): every token, or the real ones
        heads, D = attn.n_heads, attn.head_dim
        q8, s = k["quantize"](x)  # (N, H) int8 (or u8, +128), (N, 1)
        weight, wscale, bias = self._fused_qkv()
        qkv = k["rescale"](matmul(q8, weight), s, wscale, bias)  # (N, 3H)
        qkv = qkv.view(*shape[:2], 3 * H) if unpadded is None else unpadded.pad(qkv)  # (B, T, [1,] 3H)
        B, T = qkv.shape[:2]
        q, key, v = qkv.view(B, T, 3, heads, D).transpose(1, 3).unbind(2)  # each (B, heads, T, D)
        y = F.scaled_dot_product_attention(q, key, v, attn_mask=attn_bias, scale=1.0 / math.sqrt(D))
        y = y.transpose(1, 2).reshape(B, T, H)
        q8, s = k["quantize"](y.reshape(-1, H) if unpadded is None else unpadded.rows(y))  # (N, H)
        out, norm = attn.out, self.attn_norm
        x, q8, s = k["rescale_add_norm_quantize"](matmul(q8, out.packed()), s, out.wscale, out.bias, x,
                                                  norm.weight, norm.bias, norm.eps)  # (N, H) fp32 and int8
        ffn_in, ffn_out, norm = self.ffn_in, self.ffn_out, self.ffn_norm
        h = k["rescale_act"](matmul(q8, ffn_in.packed()), s, ffn_in.wscale, ffn_in.bias, self.act)
        q8, s = k["quantize"](h)  # (N, I) int8
        x = k["rescale_add_norm"](matmul(q8, ffn_out.packed()), s, ffn_out.wscale, ffn_out.bias, x,
                                  norm.weight, norm.bias, norm.eps)
        return x.view(shape)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._qkv = None  # new weights: the stacked copy is stale
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _quantize_tokens(x: torch.Tensor, zero_point: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, in) float -> (N, in) int8 values in [-127, 127] stored + zero_point as `dtype`, and (N, 1) fp32 scales,
    symmetric per row."""
    x = x.float()
    scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-8) / 127.0
    q = (x / scale).round().clamp(-127, 127)
    return (q + zero_point if zero_point else q).to(dtype), scale


def _rescale(acc: torch.Tensor, scale: torch.Tensor, wscale: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    y = acc.float() * scale * wscale  # (N, out)
    return y + bias if bias is not None else y


def _rescale_add_norm(acc, scale, wscale, bias, residual, weight, beta, eps: float) -> torch.Tensor:
    """LayerNorm(rescaled matmul + residual): the end of a post-LN sub-block."""
    y = _rescale(acc, scale, wscale, bias) + residual  # (N, H)
    return F.layer_norm(y, (y.shape[-1],), weight, beta, eps)


def _rescale_act(acc, scale, wscale, bias, act) -> torch.Tensor:
    """The FFN's middle. Its quantization stays a separate pass: fused, the compiled kernel computes the activation
    twice, once for the row's max and once for the values (8.7 ms against 4.5 ms for 2048 x 3072, measured)."""
    return act(_rescale(acc, scale, wscale, bias))


def _eager_kernels(zero_point: int, dtype: torch.dtype) -> dict:
    """The element-wise passes around the matmul, for a backend that takes a token's int8 values + `zero_point`."""

    def quantize(x):
        return _quantize_tokens(x, zero_point, dtype)

    def rescale_add_norm_quantize(acc, scale, wscale, bias, residual, weight, beta, eps: float):
        """The attention block's end and the FFN's input quantization: (N, H) fp32, (N, H) int8, (N, 1) scales."""
        y = _rescale_add_norm(acc, scale, wscale, bias, residual, weight, beta, eps)
        return (y, *quantize(y))

    return {"quantize": quantize, "rescale": _rescale, "rescale_add_norm": _rescale_add_norm,
            "rescale_add_norm_quantize": rescale_add_norm_quantize, "rescale_act": _rescale_act}


_EAGER: dict | None = None
_KERNELS: dict | None = None


def _eager() -> dict:
    global _EAGER
    if _EAGER is None:
        _EAGER = _eager_kernels(_backend().zero_point, _backend().dtype)
    return _EAGER


def _kernels() -> dict:
    """`_eager()`'s functions, compiled by torch.compile when it works here, else the eager functions.

    The element-wise passes around the int8 matmul cost more than the matmul itself when each is its own kernel
    (measured: a 2048x768 -> 3072 Linear took 34.6 ms eager, 18.9 ms with its quantize and rescale fused, bf16
    27.4 ms, the int8 matmul alone 11.2 ms). They are compiled with inductor's C++ wrapper, which releases the GIL
    while a kernel runs: the default Python wrapper holds it, so two server workers (threads) took turns through
    every kernel (two threads calling one kernel: 2.7x the time of one thread alone, against 1.1x with the C++
    wrapper). That wrapper's first compile takes ~30 s on a cold cache (~5 s from inductor's disk cache); if it
    fails, the Python wrapper, then the eager functions. Without a C++ compiler, or with ROBERTAOPS_COMPILE=0, the
    eager functions run (the same numbers up to float rounding)."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = eager = _eager()
        if os.environ.get("ROBERTAOPS_COMPILE", "1") != "0":
            for options in ({"cpp_wrapper": True}, {}):
                try:
                    compiled = {name: torch.compile(fn, dynamic=True, options=options) for name, fn in eager.items()}
                    _probe(compiled)  # compile now, on tiny inputs, so a failure falls back here and not mid-batch
                    _KERNELS = compiled
                    break
                except Exception as exc:  # noqa: BLE001 - no compiler, an unsupported platform: eager is correct too
                    warnings.warn(f"int8: torch.compile{' (C++ wrapper)' if options else ''} unavailable "
                                  f"({type(exc).__name__}); falling back", stacklevel=2)
    return _KERNELS


def _probe(k: dict) -> None:
    """Call every kernel once with arguments typed like an encoder layer's (parameters where the layer passes
    parameters, inference mode) and sizes that differ from each other, so that real batches reuse what this
    compiled: a probe on square inputs or plain tensors was compiled again at the first real batch, and once more
    whenever a batch's token count met a compiled-in equality (dynamo guards on types and on equal sizes). Sizes
    taken from parameters are compiled static, so the three kernels that take a layer's parameters compile once
    more for a model's own widths, at its first forward (a server's warm-up)."""
    N, H, OUT = 6, 24, 40  # tokens, hidden, out: all different
    bias = nn.Parameter(torch.zeros(OUT), requires_grad=False)  # an Int8Linear's bias
    h_bias = nn.Parameter(torch.zeros(H), requires_grad=False)
    gamma, beta = nn.Parameter(torch.ones(H)), nn.Parameter(torch.zeros(H))  # LayerNorm's, trainable as in the model
    backend = _backend()
    with torch.inference_mode():
        x, wscale = torch.randn(N, H), torch.ones(OUT)
        q, s = k["quantize"](x)
        acc = backend.matmul(q, backend.pack(torch.ones(OUT, H, dtype=torch.int8)))  # (N, OUT), the backend's dtype
        k["rescale"](acc, s, wscale, torch.zeros(OUT))  # Q, K and V: their stacked biases are plain tensors
        k["rescale_act"](acc, s, wscale, bias, F.gelu)
        acc = backend.matmul(q, backend.pack(torch.ones(H, H, dtype=torch.int8)))  # (N, H)
        for name in ("rescale_add_norm", "rescale_add_norm_quantize"):
            k[name](acc, s, wscale[:H], h_bias, x, gamma, beta, 1e-12)


def int8_compiled() -> bool:
    """True when the fused (compiled) int8 kernels are in use, not the slower eager fallback."""
    return _kernels() is not _eager()


def encoder_linears(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every Linear inside the encoder's layers (heads keep full precision)."""
    encoder = getattr(model, "encoder", model)
    return [(parent, name) for parent in encoder.modules() for name, child in parent.named_children()
            if isinstance(child, nn.Linear)]


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace the encoder's Linears with Int8Linear and its layers with Int8Layer, in place (the model must be
    float32); returns the model."""
    for parent, name in encoder_linears(model):
        setattr(parent, name, Int8Linear.from_linear(getattr(parent, name)))
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
