"""The int8 path's matmul on Intel AMX tiles (`amx_int8.c`), where the CPU has them; `torch._int_mm` elsewhere.

On a 2-core Xeon with AMX, roberta-base's 48 int8 matmuls take ~3 ms at 16 tokens with this kernel against 10-11
ms with `torch._int_mm`, and about half the time from 64 to 2048 tokens (benchmarks/RESULTS.md, "A new machine:
Intel Xeon with AMX").
The sums are the same integers either way, so turning it on changes no output.

The C source ships with the package and is compiled once per machine with the system's C compiler (the int8 path
already needs one: torch.compile builds its fused layers in C++). The library is cached under
$ROBERTAOPS_HOME/kernels (~/.robertaops), named by a hash of the source, flags and compiler. Inside a compiled
layer it runs as the custom op `robertaops::amx_int8_mm`, so torch.compile keeps it as one opaque call. Threads:
as many as torch's intra-op setting, on torch's own OpenMP runtime (the library links the libgomp torch loaded).
`ROBERTAOPS_INT8_MATMUL=int_mm` turns it off (benchmarks compare the two).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("amx_int8.c")
FLAGS = ["-O2", "-mamx-tile", "-mamx-int8", "-fopenmp", "-shared", "-fPIC"]
TILE = 64  # N and K must be multiples of this (4 channel blocks of 16; K slices of 64 bytes)


def fits(out_features: int, in_features: int) -> bool:
    return out_features % TILE == 0 and in_features % TILE == 0


def pack(qweight: torch.Tensor) -> torch.Tensor:
    """(N, K) int8 weights -> (N/16, K/64, 16, 64) AMX B tiles: tile (n, s) row r holds k = 64s + 4r .. + 3 of each
    of channels 16n .. 16n + 15, four bytes per channel."""
    N, K = qweight.shape
    tiles = qweight.reshape(N // 16, 16, K // 64, 16, 4).permute(0, 2, 3, 1, 4)  # (n, s, r, channel, byte)
    return tiles.reshape(N // 16, K // 64, 16, 64).contiguous()


@torch.library.custom_op("robertaops::amx_int8_mm", mutates_args=())
def matmul(a: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """(M, K) int8 x weights packed by `pack` -> (M, N) int32, exact."""
    a = a.contiguous()
    M, K = a.shape
    out = torch.empty(M, packed.shape[0] * 16, dtype=torch.int32)
    if M:
        _library().ro_amx_int8_mm(a.data_ptr(), packed.data_ptr(), out.data_ptr(), M, out.shape[1], K,
                                  torch.get_num_threads())
    return out


@matmul.register_fake
def _(a: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return a.new_empty((a.shape[0], packed.shape[0] * 16), dtype=torch.int32)


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
    return load_library(build(SOURCE.read_text()))


def load_library(path: Path) -> ctypes.CDLL:
    """A built kernel, its functions typed. CDLL calls release the GIL: two server workers run side by side."""
    lib = ctypes.CDLL(str(path))
    lib.ro_amx_init.restype = ctypes.c_int
    lib.ro_amx_int8_mm.restype = None
    lib.ro_amx_int8_mm.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 4
    return lib


def build(source: str) -> Path:
    """Compile a kernel source once per source, flags and compiler; returns the cached shared library. (Also how
    benchmarks/int8_ab.py builds an earlier revision's source to compare against.)"""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise OSError("no C compiler (gcc or $CC)")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([source, *FLAGS, version]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"amx_int8-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # same filesystem: the rename is atomic
            built = Path(tmp) / target.name
            c_file = Path(tmp) / SOURCE.name
            c_file.write_text(source)
            run = subprocess.run([cc, *FLAGS, str(c_file), "-o", str(built)], capture_output=True, text=True)
            if run.returncode:
                raise OSError(f"{Path(cc).name} failed: {run.stderr.strip().splitlines()[-1:]}")
            os.replace(built, target)  # concurrent builders each write a whole file; the last rename wins
    return target


def _cache_dir() -> Path:
    return Path(os.environ.get("ROBERTAOPS_HOME") or Path.home() / ".robertaops").expanduser() / "kernels"
