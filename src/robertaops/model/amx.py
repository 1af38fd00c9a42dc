"""The int8 path's matmul on Intel AMX tiles (`amx_int8.c`), where the CPU has them; `torch._int_mm` elsewhere.

On a 2-core Xeon with AMX, roberta-base's 48 int8 matmuls take ~3 ms at 16 tokens with this kernel against 10-11
ms with `torch._int_mm`, and about half the time from 64 to 2048 tokens (benchmarks/RESULTS.md, "A new machine:
Intel Xeon with AMX").
The sums are the same integers either way, so turning it on changes no output.

The kernel runs as torch's operator `robertaops::amx_int8_mm` (and `amx_int8_mm_float`, the same sums as float32,
for the QKV matmul: see amx_int8.c): their schemas and shape functions are defined here, their
CPU kernel in `amx_int8_op.cpp` (torch's stable C ABI), so a compiled layer calls it without coming back to Python.
Both sources ship with the package and are compiled once per machine with the system's C++ compiler (the int8 path
already needs one: its fused layers are compiled C++). The library is cached under
$ROBERTAOPS_HOME/kernels (~/.robertaops), named by a hash of the sources, flags, compiler and torch version.
Threads: as many as torch's intra-op setting, on torch's own OpenMP runtime (the library links the libgomp torch
loaded). `ROBERTAOPS_INT8_MATMUL=int_mm` turns it off (benchmarks compare the two).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("amx_int8.c")
OP_SOURCE = Path(__file__).with_name("amx_int8_op.cpp")
FLAGS = ["-O2", "-mamx-tile", "-mamx-int8", "-mavx512f", "-fopenmp", "-shared", "-fPIC"]
TORCH_DIR = Path(torch.__file__).parent
OP_FLAGS = ["-std=c++17", f"-I{TORCH_DIR / 'include'}", f"-L{TORCH_DIR / 'lib'}", "-ltorch_cpu", "-lc10",
            f"-Wl,-rpath,{TORCH_DIR / 'lib'}"]
TILE = 64  # N and K must be multiples of this (4 channel blocks of 16; K slices of 64 bytes)


def fits(out_features: int, in_features: int) -> bool:
    return out_features % TILE == 0 and in_features % TILE == 0


def pack(qweight: torch.Tensor) -> torch.Tensor:
    """(N, K) int8 weights -> (N/16, K/64, 16, 64) AMX B tiles: tile (n, s) row r holds k = 64s + 4r .. + 3 of each
    of channels 16n .. 16n + 15, four bytes per channel."""
    N, K = qweight.shape
    tiles = qweight.reshape(N // 16, 16, K // 64, 16, 4).permute(0, 2, 3, 1, 4)  # (n, s, r, channel, byte)
    return tiles.reshape(N // 16, K // 64, 16, 64).contiguous()


torch.library.define("robertaops::amx_int8_mm", "(Tensor a, Tensor packed) -> Tensor")
torch.library.define("robertaops::amx_int8_mm_float", "(Tensor a, Tensor packed) -> Tensor")


def matmul(a: torch.Tensor, packed: torch.Tensor, as_float: bool = False) -> torch.Tensor:
    """(M, K) int8 x weights packed by `pack` -> (M, N) int32, exact; with `as_float`, the same sums as float32,
    converted as `.float()` converts them (in the kernel, while they are in cache: see amx_int8.c). Only where
    `available()`."""
    op = torch.ops.robertaops.amx_int8_mm_float if as_float else torch.ops.robertaops.amx_int8_mm
    return op(a, packed)


@torch.library.register_fake("robertaops::amx_int8_mm")
def _(a: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return a.new_empty((a.shape[0], packed.shape[0] * 16), dtype=torch.int32)


@torch.library.register_fake("robertaops::amx_int8_mm_float")
def _(a: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return a.new_empty((a.shape[0], packed.shape[0] * 16), dtype=torch.float32)


@functools.cache
def available() -> bool:
    """True when int8 matmuls should run on AMX here: the CPU has AMX int8, the kernel compiled and loaded, the OS
    granted the tiles, and the kernel gave torch._int_mm's exact sums on a check."""
    if os.environ.get("ROBERTAOPS_INT8_MATMUL", "auto") == "int_mm" or not {"amx_int8", "amx_tile"} <= cpu_flags():
        return False
    try:
        if _library().ro_amx_init() != 0:
            raise OSError("the kernel refused AMX tile state (arch_prctl)")
        g = torch.Generator().manual_seed(0)
        a = torch.randint(-127, 128, (21, 128), dtype=torch.int8, generator=g)  # a full and a short row block
        w = torch.randint(-127, 128, (64, 128), dtype=torch.int8, generator=g)
        if not torch.equal(matmul(a, pack(w)), torch._int_mm(a, w.t().contiguous())):
            raise ArithmeticError("the kernel's sums differ from torch._int_mm's")
        return True
    except (OSError, subprocess.CalledProcessError, ArithmeticError, RuntimeError) as exc:
        warnings.warn(f"int8: AMX kernel unavailable ({exc}); using torch._int_mm", stacklevel=2)
        return False


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them; empty elsewhere (no cheap way to know: the portable paths)."""
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


@functools.cache
def _library() -> ctypes.CDLL:
    """The kernel as a library; loading it registers the operator's CPU kernel."""
    return load_library(build(SOURCE.read_text()))


def load_library(path: Path) -> ctypes.CDLL:
    """A built kernel, its C functions typed (CDLL calls release the GIL). Loaded global, so that the int8 layers
    compiled by AOTInductor (model/aot_layer.py) find the operator's C shim in it."""
    lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    lib.ro_amx_init.restype = ctypes.c_int
    lib.ro_amx_int8_mm.restype = None
    lib.ro_amx_int8_mm.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 5
    return lib


def build(source: str, op: bool = True) -> Path:
    """Compile a kernel source once per source, flags, compiler and torch version; returns the cached shared
    library. With `op`, the library also holds the operator's kernel (`amx_int8_op.cpp` around `source`); without,
    only the C functions, which is how benchmarks/int8_ab.py loads an earlier revision's kernel beside the one in
    use (a second operator kernel would replace the first)."""
    env, names = ("CXX", ("g++", "c++")) if op else ("CC", ("gcc", "cc"))
    cc = os.environ.get(env) or next(filter(None, map(shutil.which, names)), None)
    if cc is None:
        raise OSError(f"no compiler for the AMX kernel ({' or '.join(names)}, or ${env})")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    sources = {SOURCE.name: source, **({OP_SOURCE.name: OP_SOURCE.read_text()} if op else {})}
    flags = FLAGS + (OP_FLAGS if op else [])
    key = hashlib.sha256("\0".join([*sources.values(), *flags, version, torch.__version__]).encode()).hexdigest()[:16]
    target = cache_dir() / f"amx_int8{'_op' if op else ''}-{key}.so"
    if target.exists():
        with contextlib.suppress(OSError):  # in use (see prune); a read-only cache still serves
            os.utime(target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # same filesystem: the rename is atomic
            built = Path(tmp) / target.name
            for name, text in sources.items():
                (Path(tmp) / name).write_text(text)
            main = Path(tmp) / (OP_SOURCE.name if op else SOURCE.name)
            run = subprocess.run([cc, str(main), *flags, "-o", str(built)], capture_output=True, text=True)
            if run.returncode:
                raise OSError(f"{Path(cc).name} failed: {run.stderr.strip().splitlines()[-1:]}")
            os.replace(built, target)  # concurrent builders each write a whole file; the last rename wins
        prune("amx_int8*-*.so")
    return target


def prune(pattern: str, days: float = 30) -> None:
    """Delete the cached libraries matching `pattern` that no process has loaded for `days` (loading one touches
    it): each upgrade (new sources, torch or compiler) and each model shape leaves its own, which nothing would use
    again. Called after a build, which is when one more appears."""
    cutoff = time.time() - days * 86400
    for old in cache_dir().glob(pattern):
        with contextlib.suppress(OSError):  # another process may be pruning too
            if old.stat().st_mtime < cutoff:
                old.unlink()


def cache_dir() -> Path:
    """Where compiled kernels and layers are kept (registry/store.py's home; the model layer may not import it)."""
    return Path(os.environ.get("ROBERTAOPS_HOME") or Path.home() / ".robertaops").expanduser() / "kernels"
