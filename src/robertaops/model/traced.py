"""Encoder layers traced by TorchScript for CPU inference: each layer one call that runs without the GIL.

Why: a server runs its model on worker threads beside an event loop that holds the GIL for every request it
parses and answers. An eager layer takes the GIL back between each of its ~20 torch ops, and while the loop holds
it (in bursts of several milliseconds when a batch's answers go out) the worker waits. Two one-thread workers
running all-MiniLM-L6-v2's layers beside a thread holding the GIL 2 ms out of every 11 kept 0.79 of their speed
alone when eager, 0.92 when traced (the Python thread's own CPU share caps it at ~0.91), and a two-worker server
served 1.09x as many short requests (benchmarks/RESULTS.md, fifteenth session). A traced layer is the same ATen
ops on the same parameters (not copies): its outputs are the eager layer's, bit for bit, at every batch shape,
since the trace records sizes as it reads them.

What it costs: the Linears run `F.linear` (MKL) on plain weights, not oneDNN's packed copies, whose op TorchScript
cannot record. On an Intel Xeon the two run level (one thread, MiniLM shapes: 0.96-1.05x); on the AMD Zen 5 the
packed copies were 1.15-1.5x faster (model/packed.py): servers trace float32 models on Intel CPUs only
(`api.traced_by_default`), and the Python API never does unless asked (`Model.trace_layers`).

`TracedLayer` is an encoder `Layer` (same submodules and parameters, same state dict); with autograd on, in training
mode, or off the CPU it runs the eager forward. Each batch layout (no padding, padded, unpadded) is traced at its
first call, in a few milliseconds.
"""

from __future__ import annotations

import threading
import warnings

import torch
from torch import nn

from .encoder import Layer, Unpadded
from .packed import unpack_linears


class _Dense(nn.Module):
    def __init__(self, layer: Layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return Layer.forward(self.layer, x, None)


class _Masked(_Dense):
    def forward(self, x, attn_bias):
        return Layer.forward(self.layer, x, attn_bias)


class _Unpadded(_Dense):
    def forward(self, x, attn_bias, index):
        # Sizes read from the inputs inside the trace: recorded as size ops, so the batch's shape stays free.
        return Layer.forward(self.layer, x, attn_bias, Unpadded(index, attn_bias.shape[0], attn_bias.shape[3]))


class TracedLayer(Layer):
    """A `Layer` that runs inference on the CPU through TorchScript traces of itself, one per batch layout."""

    @classmethod
    def from_layer(cls, layer: Layer) -> TracedLayer:
        traced = cls.__new__(cls)
        traced.__dict__.update(layer.__dict__)  # the same submodules and parameters: nothing copied
        traced.__dict__["_traces"] = {}
        traced.__dict__["_lock"] = threading.Lock()  # two server workers may bring a layout at once
        return traced

    def forward(self, x, attn_bias, unpadded: Unpadded | None = None):
        if self.training or torch.is_grad_enabled() or x.device.type != "cpu":
            return super().forward(x, attn_bias, unpadded)
        if unpadded is not None:
            args, wrapper = (x, attn_bias, unpadded.index), _Unpadded
        elif attn_bias is not None:
            args, wrapper = (x, attn_bias), _Masked
        else:
            args, wrapper = (x,), _Dense
        key = (wrapper, x.dtype, None if attn_bias is None else (attn_bias.dtype, attn_bias.dim()))
        trace = self._traces.get(key, False)
        if trace is False:
            trace = self._trace(key, wrapper, args)
        return super().forward(x, attn_bias, unpadded) if trace is None else trace(*args)

    def _trace(self, key: tuple, wrapper: type[nn.Module], args: tuple):
        """The layout's trace, made once (None: it could not be traced, and the layer runs eagerly)."""
        with self._lock:
            if key not in self._traces:
                try:
                    with warnings.catch_warnings():
                        # torch 2.13 deprecates TorchScript for torch.compile and torch.export; neither gives a call
                        # that runs without the GIL and without a compiler (model/aot_layer.py needs one). torch is
                        # pinned; should tracing go, the except below keeps the eager layer.
                        warnings.simplefilter("ignore", DeprecationWarning)
                        self._traces[key] = torch.jit.trace(wrapper(self), args, check_trace=False)
                except Exception as exc:  # noqa: BLE001 - any tracing failure: the eager layer is correct too
                    warnings.warn(f"traced layers: {wrapper.__name__[1:].lower()} batches run eagerly "
                                  f"({type(exc).__name__}: {str(exc)[:200]})", stacklevel=4)
                    self._traces[key] = None
            return self._traces[key]

    def _apply(self, fn, recurse=True):
        self._traces.clear()  # new parameter tensors (.to(), .float()): traces hold the old ones
        return super()._apply(fn, recurse)


def trace_layers(model: nn.Module) -> int:
    """Make every encoder `Layer` of `model` a `TracedLayer` in place, its Linears plain (`F.linear`, a packed copy
    freed); returns the number of layers. For inference on the CPU (a server's workers)."""
    count = 0
    unpack_linears(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is Layer:
                setattr(parent, name, TracedLayer.from_layer(child))
                count += 1
    return count
