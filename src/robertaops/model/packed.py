"""CPU inference Linears on oneDNN with weights packed once, at load: the exact fp32 (and bf16) path's matmuls.

Why: torch's CPU `F.linear` in fp32 goes to MKL, which on this AMD Zen 5 runs its generic code path: 48-134
GFLOP/s on the 2 cores. oneDNN dispatches on the CPU's instruction set, not its vendor, and with the weights
reordered into its blocked layout once (not at every call) it runs 160-200 GFLOP/s at 256-2048 tokens and 2-3x MKL
at 16 (`benchmarks/linear_kernels.py`; a whole fp32 forward 1.15-1.5x, batch 1 1.4-2x, benchmarks/RESULTS.md).
Same IEEE fp32 arithmetic, another summation order: on random roberta-base embeddings the two agree to 1e-7.

`PackedLinear` is an `nn.Linear` (same parameters, same state dict, `isinstance` still holds) whose forward takes
the packed path only where it applies: on the CPU with autograd off. Anything else — training, a GPU, a dtype oneDNN
has no kernel for — runs `F.linear` as before. The packed copy follows the weight: an in-place update
(load_state_dict, an optimiser step) or a new tensor swapped in (`module.to()`, `weight.data = ...`) repacks at the
next call. The cost is memory: the packed copy sits beside the weight, once more the size of the Linears' weights.
A process that only runs inference (a server) can drop the plain weight (`drop_plain_weights`): whatever needs it
again — a forward with autograd on, reading `.weight`, state_dict, load_state_dict, `.to()` — gets it back exactly,
reordered from the packed copy.

In bf16 a packed Linear can also apply the activation that follows it, inside the same oneDNN call
(`with_activation`, used by the encoder's FFN).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

PACKED_DTYPES = (torch.float32, torch.bfloat16)
FUSED_ACTIVATION_DTYPES = (torch.bfloat16,)
# hidden_act -> oneDNN post-op (name, algorithm), the same functions as encoder.ACT_FNS
FUSED_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh"),
                     "relu": ("relu", "")}


class PackedLinear(nn.Linear):
    """An nn.Linear that runs on a oneDNN-packed copy of its weight for CPU inference."""

    _packed: torch.Tensor | None = None
    _packed_for: tuple | None = None  # (version, address, dtype) of the weight the packed copy was made from
    _packed_from: torch.Tensor | None = None  # that weight, held so that its address cannot be reused meanwhile
    _plain_dropped = False  # the weight's values live only in the packed copy (drop_plain)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> PackedLinear:
        packed = cls.__new__(cls)
        packed.__dict__.update(linear.__dict__)  # the same Parameters and hooks: nothing copied
        packed.repack()
        return packed

    def repack(self) -> torch.Tensor:
        w = self.weight
        self._packed_from = w.detach()
        self._packed = torch.ops.mkldnn._reorder_linear_weight(self._packed_from, None)
        self._packed_for = _identity(w)
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._packed_call(x, "none", "")
        return F.linear(x, self.weight, self._parameters["bias"]) if y is None else y

    def with_activation(self, x: torch.Tensor, activation: str) -> torch.Tensor | None:
        """activation(self(x)) in one oneDNN call, the activation applied to each output block while it is still
        in cache; None where that does not apply (the caller then runs the two steps). `activation` is a config's
        hidden_act. Only in bf16: there the separate activation was a pass over the (tokens, 3072) output as long
        as the matmul itself (2048 x 768 -> 3072 on a 2-core Xeon with AMX: 14.7 ms apart, 6.8 ms fused). In fp32
        it gained nothing measurable, and oneDNN's erf is not torch's to the last bit."""
        post_op = FUSED_ACTIVATIONS.get(activation)
        if post_op is None or self._parameters["weight"].dtype not in FUSED_ACTIVATION_DTYPES:
            return None
        return self._packed_call(x, *post_op)

    def _packed_call(self, x: torch.Tensor, post_op: str, algorithm: str) -> torch.Tensor | None:
        """oneDNN's packed matmul (+ bias, + post_op), or None off its path: autograd on, not on the CPU, a dtype
        without a packed kernel."""
        w, bias = self._parameters["weight"], self._parameters["bias"]  # not self.weight: that would restore it
        if torch.is_grad_enabled() or w.device.type != "cpu" or w.dtype not in PACKED_DTYPES or x.dtype != w.dtype:
            return None
        fresh = self._plain_dropped or self._packed_for == _identity(w)  # a dropped weight cannot have changed
        packed = self._packed if fresh else self.repack()
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), packed, bias, post_op, [], algorithm)
        return y.view(*shape[:-1], self.out_features)

    # -- the plain weight, dropped and restored ------------------------------------------------------------------
    def drop_plain(self) -> int:
        """Free the plain weight, keeping the packed copy; returns the bytes freed. The Parameter stays (same
        object, shape and dtype, so optimisers and parameter counts still see it) but reads NaN until restored."""
        w = self._parameters["weight"]
        if self._plain_dropped or w.device.type != "cpu" or w.dtype not in PACKED_DTYPES:
            return 0
        if self._packed_for != _identity(w):
            self.repack()
        freed = w.numel() * w.element_size()
        w.data = torch.full((1,), float("nan"), dtype=w.dtype).expand(w.shape)  # one element: in-place writes fail
        self._packed_from = None
        self._plain_dropped = True
        return freed

    def restore_plain(self) -> None:
        """Bring the plain weight back, exactly (oneDNN reorders the packed copy to the plain layout)."""
        if self._plain_dropped:
            w = self._parameters["weight"]
            w.data = self._packed.to_dense()
            self._plain_dropped = False
            self._packed_from, self._packed_for = w.detach(), _identity(w)

    def __getattr__(self, name: str):
        if name == "weight" and self.__dict__.get("_plain_dropped"):
            self.restore_plain()
        return super().__getattr__(name)

    def _save_to_state_dict(self, *args, **kwargs):
        self.restore_plain()
        super()._save_to_state_dict(*args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self.restore_plain()  # loading copies into the weight: it needs its own storage again
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):
        self.restore_plain()  # .to(), .float(), .cuda(): convert the real values
        return super()._apply(fn, recurse)


_PACKED_STATE = ("_packed", "_packed_for", "_packed_from", "_plain_dropped")  # what PackedLinear adds to a Linear


def _identity(w: torch.Tensor) -> tuple:
    """What changes when the weight does: its version (in-place updates) and its address and dtype (a new tensor
    swapped in, as `module.to()` and `weight.data = ...` do)."""
    return w._version, w.data_ptr(), w.dtype


@functools.cache
def packing_supported(dtype: torch.dtype = torch.float32) -> bool:
    """True when this torch build has oneDNN's packed linear for `dtype` (checked once on a tiny input)."""
    if dtype not in PACKED_DTYPES:
        return False
    try:
        w = torch.ones(4, 8, dtype=dtype)
        y = torch.ops.mkldnn._linear_pointwise(torch.ones(2, 8, dtype=dtype),
                                               torch.ops.mkldnn._reorder_linear_weight(w, None), None, "none", [], "")
        return torch.equal(y.float(), torch.full((2, 4), 8.0))
    except (RuntimeError, AttributeError):
        return False


def pack_linears(model: nn.Module) -> nn.Module:
    """Replace every plain nn.Linear in `model` with a PackedLinear over the same parameters, in place (the model
    must already sit on the device and dtype it will run in); returns the model."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, PackedLinear.from_linear(child))
    return model


def unpack_linears(model: nn.Module) -> nn.Module:
    """The inverse of `pack_linears`: every PackedLinear in `model` becomes a plain nn.Linear over the same
    parameters (a dropped plain weight restored first), in place, its packed copy freed; returns the model."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is PackedLinear:
                child.restore_plain()
                plain = nn.Linear.__new__(nn.Linear)
                plain.__dict__.update({k: v for k, v in child.__dict__.items() if k not in _PACKED_STATE})
                setattr(parent, name, plain)
    return model


def drop_plain_weights(model: nn.Module) -> int:
    """Drop the plain weight of every PackedLinear in `model` (see PackedLinear.drop_plain); returns the bytes
    freed. For processes that only run inference: training, saving or moving the model brings the weights back."""
    return sum(m.drop_plain() for m in model.modules() if isinstance(m, PackedLinear))
