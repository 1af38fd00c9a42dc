"""The int8 encoder layer compiled ahead of time by AOTInductor, and called through the library's C interface.

Why not torch.compile's layer, which runs the same generated C++: each call to it also runs Python around the C++
(dynamo's guard checks, AOTAutograd's and inductor's wrappers), twelve times per roberta-base forward. On a tiny
layer, where the work takes a few microseconds, a call took 129 us that way and 65 us here. Random roberta-base int8
on AMX, both in one process, alternating (benchmarks/RESULTS.md, fourteenth session): `embed` 1.41-1.43x faster at
batch 1 x 16 tokens and 1.02-1.07x on batches, the same outputs to the bit; a two-worker int8 server 1.86x (the GIL,
below).

How it works:
- `quantize._int8_layer` is exported (torch.export) and compiled into one shared library per *layout* and per
  layer *shape*, with the batch's sizes left dynamic. The layouts are `dense` (x (B, T, H), no mask), `masked`
  (x (B, T, H) and a (B, 1, 1, T) mask) and `unpadded` (x (R, H), the mask, and the positions of the R real
  tokens; see encoder.Unpadded). The shape covers the widths, heads, activation, LayerNorm eps, attention dtype and
  matmul layout. The weights are inputs, so every layer of a model, and every model of that shape, shares one
  library.
- Libraries are cached under $ROBERTAOPS_HOME/kernels, named by a hash of everything that decides their code: the
  sources behind the layer, torch's version, the CPU, the compiler and the shape. A process that finds one loads it
  in well under a second; building one takes ~20-25 s (`Runner.warm_up` does it at load, not under a request).
  Libraries no process has loaded for 30 days are deleted when a new one is built.
- The AMX matmul is called through its C shim (`amx_int8_op.cpp`), directly, not through torch's dispatcher.
- The call goes through ctypes, which releases the GIL, so a server's two workers run their layers side by side.
  Tensors cross as torch's own C handles (torch._C._aoti's helpers, as inductor's generated Python uses them).
Anything this does not cover (another mask shape, an activation outside encoder.ACT_FNS, a layer without biases)
runs `fallback`, as does a layout whose library fails to build (with a warning, once).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from . import amx
from .encoder import ACT_FNS, Unpadded

HERE = Path(__file__).parent
SOURCES = ("aot_layer.py", "quantize.py", "encoder.py", "amx_int8.c", "amx_int8_op.cpp")  # what decides the code
SHIM = "AOTITorchError aoti_torch_cpu_amx_int8_mm{}(AtenTensorHandle a, AtenTensorHandle packed, AtenTensorHandle* r)"
CONCURRENT_RUNS = 8  # calls one library runs at once (server workers, a rollout's two models); more wait their turn

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
_capsule = ctypes.pythonapi.PyCapsule_New
_capsule.restype, _capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class AotStep:
    """Callable like `quantize._int8_layer` (x, attn_bias, unpadded, weights) -> x, running each (layout, shape)
    through its compiled library, built or loaded at first use; `fallback` runs the rest."""

    def __init__(self, fallback: Callable):
        self.fallback = fallback
        self._libraries: dict[tuple, Library | None] = {}  # None: that key runs `fallback`
        self._lock = threading.Lock()  # one build at a time; callers of a key being built wait for it

    def __call__(self, x: torch.Tensor, attn_bias: torch.Tensor | None, unpadded: Unpadded | None, w) -> torch.Tensor:
        layout = _layout(x, attn_bias, unpadded)
        if layout is None:
            return self.fallback(x, attn_bias, unpadded, w)
        tensors = _tensors(w)
        key = (layout, x.dtype, len(tensors), w.qkv[0].shape, w.ffn_in[0].shape, w.heads, w.act, w.act_floor,
               w.attn_dtype, w.attn_norm[2], w.ffn_norm[2])
        library = self._libraries.get(key, False)
        if library is False:
            library = self._library(key, x, attn_bias, unpadded, w)
        if library is None:
            return self.fallback(x, attn_bias, unpadded, w)
        inputs = [x.contiguous()]
        if attn_bias is not None:
            inputs.append(attn_bias.contiguous())
        if unpadded is not None:
            inputs.append(unpadded.index)
        return library(inputs + tensors)

    def falls_back(self) -> bool:
        """True when some layout seen so far failed to compile."""
        return None in self._libraries.values()

    def _library(self, key: tuple, x, attn_bias, unpadded, w) -> Library | None:
        with self._lock:
            if key not in self._libraries:
                try:
                    self._libraries[key] = load(key[0], w, x.shape[-1])
                except Exception as exc:  # noqa: BLE001 - an export or compiler failure: the fallback is correct too
                    warnings.warn(f"int8: the {key[0]} layer did not compile ahead of time ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}); running it with the fallback", stacklevel=3)
                    self._libraries[key] = None
            return self._libraries[key]


def _layout(x: torch.Tensor, attn_bias: torch.Tensor | None, unpadded: Unpadded | None) -> str | None:
    """Which library runs this call, or None for the fallback."""
    if x.dtype != torch.float32:
        return None
    if attn_bias is not None and (attn_bias.dtype != torch.bool or attn_bias.dim() != 4
                                  or attn_bias.shape[1:3] != (1, 1)):
        return None  # a float bias, or a full (B, 1, T, T) mask (packed sequences, training): not compiled here
    if unpadded is not None:
        return "unpadded" if attn_bias is not None and x.dim() == 2 else None
    if x.dim() != 3:
        return None
    return "dense" if attn_bias is None else "masked"


def _tensors(w) -> list[torch.Tensor]:
    """The tensors of a LayerWeights, field by field: the compiled layer's inputs after the activations."""
    return [t for part in w if isinstance(part, tuple) for t in part if isinstance(t, torch.Tensor)]


def _with_tensors(w, tensors):
    """`w` with its tensors replaced by `tensors`, in `_tensors`' order (inside the exported function)."""
    it = iter(tensors)
    return type(w)(*(tuple(next(it) if isinstance(t, torch.Tensor) else t for t in part)
                     if isinstance(part, tuple) else part for part in w))


def load(layout: str, w, hidden: int) -> Library:
    """The library for this layout and `w`'s shape: from the cache, else compiled into it."""
    target = amx.cache_dir() / f"int8_layer-{_digest(_shape(layout, w, hidden))}.so"
    if target.exists():
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(target)  # in use: see amx.prune
    else:
        _compile(layout, w, hidden, target)
        amx.prune("int8_layer-*.so")  # ~1.7 MB each
    return Library(target)


def _shape(layout: str, w, hidden: int) -> tuple:
    """What decides a library's code besides the sources and the machine; raises for a layer not covered."""
    act = next((name for name, fn in ACT_FNS.items() if fn is w.act), None)
    tensors = _tensors(w)
    if act is None or any(t is None for part in w[:6] for t in part) or any(
            t.is_floating_point() and t.dtype != torch.float32 for t in tensors):
        raise ValueError("a layer this compiler does not cover (activation, biases or dtypes)")
    return (layout, hidden, act, w.heads, w.act_floor, str(w.attn_dtype), w.attn_norm[2], w.ffn_norm[2],
            *((tuple(t.shape), str(t.dtype)) for t in tensors))


def _digest(shape: tuple) -> str:
    sources = [(HERE / name).read_text() for name in SOURCES]
    machine = [torch.__version__, os.environ.get("CXX", ""), *sorted(amx.cpu_flags())]  # the flags pick the ISA
    return hashlib.sha256("\0".join([*sources, *machine, repr(shape)]).encode()).hexdigest()[:16]


def _compile(layout: str, w, hidden: int, target: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations, raised inside export and compile
        _export_and_compile(layout, w, hidden, target)


def _export_and_compile(layout: str, w, hidden: int, target: Path) -> None:
    """Export `_int8_layer` for `layout` on small example sizes (2 sequences of 3 tokens, 4 of them real), the sizes
    marked dynamic, and compile it into `target`."""
    from .quantize import _int8_layer  # (quantize imports this module)

    tensors = _tensors(w)
    B, T, R = (torch.export.Dim(name, min=1) for name in ("B", "T", "R"))
    mask = torch.tensor([[True, True, True], [True, False, False]])[:, None, None, :]  # (2, 1, 1, 3)
    if layout == "unpadded":
        examples = (torch.zeros(4, hidden), mask, torch.tensor([0, 1, 2, 3]))
        dims = ({0: R}, {0: B, 3: T}, {0: R})
    else:
        examples = (torch.zeros(2, 3, hidden),) + ((mask,) if layout == "masked" else ())
        dims = ({0: B, 1: T},) + (({0: B, 3: T},) if layout == "masked" else ())

    class Layer(torch.nn.Module):
        def forward(self, *args):
            x, rest = args[0], args[len(examples):]
            attn_bias = args[1] if len(examples) > 1 else None
            unpadded = Unpadded(args[2], attn_bias.shape[0], attn_bias.shape[3]) if layout == "unpadded" else None
            return _int8_layer(x, attn_bias, unpadded, _with_tensors(w, rest))

    with torch.no_grad():
        exported = torch.export.export(Layer(), (*examples, *tensors),
                                       dynamic_shapes=((*dims, *([None] * len(tensors))),))  # (one *args)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # the compiler writes its sources beside the .so
        built = torch._inductor.aot_compile(exported.module(), (*examples, *tensors), options={
            "aot_inductor.output_path": str(Path(tmp) / target.name),
            "aot_inductor.custom_ops_to_c_shims": {
                torch.ops.robertaops.amx_int8_mm.default: [SHIM.format("")],
                torch.ops.robertaops.amx_int8_mm_float.default: [SHIM.format("_float")]},
            # Run on as many threads as the caller has (a server worker 1, the Python API all), whatever the thread
            # count where it compiled: left to inductor, a library built on one thread (a server worker, a test)
            # had no parallel loops at all, 0.74-0.80x on 2 threads (measured), and one built on N would size its
            # reductions' per-thread arrays for N.
            "cpp.dynamic_threads": True, "cpp.threads": os.cpu_count() or 1})
        os.replace(built, target)  # atomic: concurrent builders each write a whole file


class Library:
    """A compiled layer: its C interface, called through ctypes (without the GIL)."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        self.handle = ctypes.c_void_p()
        if self.lib.AOTInductorModelContainerCreateWithDevice(ctypes.byref(self.handle), ctypes.c_size_t(
                CONCURRENT_RUNS), b"cpu", None):
            raise OSError(f"{path.name}: AOTInductor could not create its model")
        self._run = self.lib.AOTInductorModelContainerRun
        self._run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.c_void_p, ctypes.c_void_p]

    def __call__(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The inputs in the exported order -> the layer's output. The library takes ownership of the handles."""
        handles = torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(inputs)
        array = (ctypes.c_void_p * len(handles))(*(_capsule_pointer(h, None) for h in handles))
        out = (ctypes.c_void_p * 1)()
        if self._run(self.handle, array, len(handles), out, 1, None, None):
            raise RuntimeError("int8: the compiled layer failed (AOTInductor's message is on stderr)")
        return torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs([_capsule(out[0], None, None)])[0]
