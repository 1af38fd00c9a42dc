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
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

PACKED_DTYPES = (torch.float32, torch.bfloat16)


class PackedLinear(nn.Linear):
    """An nn.Linear that runs on a oneDNN-packed copy of its weight for CPU inference."""

    _packed: torch.Tensor | None = None
    _packed_for: tuple | None = None  # (version, address, dtype) of the weight the packed copy was made from
    _packed_from: torch.Tensor | None = None  # that weight, held so that its address cannot be reused meanwhile

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
        w = self.weight
        if torch.is_grad_enabled() or w.device.type != "cpu" or w.dtype not in PACKED_DTYPES or x.dtype != w.dtype:
            return F.linear(x, w, self.bias)
        packed = self._packed if self._packed_for == _identity(w) else self.repack()
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), packed, self.bias, "none", [], "")
        return y.view(*shape[:-1], self.out_features)


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
