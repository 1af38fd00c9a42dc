"""model/amx.py: the int8 matmul on AMX tiles gives torch._int_mm's exact sums, and falls back cleanly."""

from __future__ import annotations

import os
import time

import pytest
import torch

import robertaops as ro
from robertaops.model import amx
from robertaops.model.quantize import _mm, _mm_weight, int8_supported

needs_amx = pytest.mark.skipif(not amx.available(), reason="no AMX int8 on this CPU (or no C compiler)")


def test_pack_puts_each_weight_byte_in_its_tile_slot():
    w = torch.randint(-127, 128, (64, 192), dtype=torch.int8, generator=torch.Generator().manual_seed(0))
    tiles = amx.pack(w)
    assert tiles.shape == (4, 3, 16, 64)
    for n, s, r, c, j in [(0, 0, 0, 0, 0), (1, 2, 5, 3, 1), (3, 1, 15, 15, 3), (2, 0, 7, 9, 2)]:
        # tile (n, s), row r, channel c's 4 bytes: W[16n + c, 64s + 4r + j]
        assert tiles[n, s, r, 4 * c + j] == w[16 * n + c, 64 * s + 4 * r + j]


@needs_amx
@pytest.mark.parametrize(("m", "n", "k"), [
    (1, 64, 64), (16, 128, 192),  # one short and one full block of 16 rows
    (17, 64, 128), (32, 128, 64),  # two row blocks in one pass
    (40, 192, 384), (49, 64, 128), (0, 64, 64),  # passes of 32, then the rest; no rows at all
])
def test_amx_matmul_equals_int_mm(m, n, k):
    g = torch.Generator().manual_seed(m + n + k)
    a = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
    w = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
    expected = (a.int() @ w.int().t())  # exact in int32 at these sizes
    assert torch.equal(amx.matmul(a, amx.pack(w)), expected)
    as_float = amx.matmul(a, amx.pack(w), as_float=True)
    assert as_float.dtype == torch.float32 and torch.equal(as_float, expected.float())


@needs_amx
def test_float_sums_past_float_precision_round_as_torch_converts_them():
    """Sums beyond 2**24 have no exact float: the kernel's conversion must round them as torch's does."""
    g = torch.Generator().manual_seed(7)
    a = torch.randint(100, 128, (37, 3072), dtype=torch.int8, generator=g)
    w = torch.randint(100, 128, (64, 3072), dtype=torch.int8, generator=g)
    exact = a.int() @ w.int().t()  # ~3e7-5e7: odd values cannot be floats
    assert exact.min() > 2**24 and (exact % 2 == 1).any()
    assert torch.equal(amx.matmul(a, amx.pack(w), as_float=True), exact.float())


@needs_amx
def test_amx_matmul_is_the_same_on_one_thread_and_two():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-127, 128, (33, 256), dtype=torch.int8, generator=g)
    packed = amx.pack(torch.randint(-127, 128, (256, 256), dtype=torch.int8, generator=g))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = amx.matmul(a, packed)
        torch.set_num_threads(2)
        two = amx.matmul(a, packed)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


@needs_amx
def test_the_operator_kernel_is_the_compiled_library_not_python():
    # A Python kernel would make every compiled int8 layer re-enter Python (and take the GIL) at each matmul.
    dump = torch._C._dispatch_dump("robertaops::amx_int8_mm")
    cpu = next(line for line in dump.splitlines() if line.startswith("CPU:"))
    assert "amx_int8_op.cpp" in cpu


@needs_amx
@pytest.mark.parametrize(("a", "k", "message"), [
    (torch.zeros(2, 64), 64, "int8 inputs"),  # float activations
    (torch.zeros(2, 128, dtype=torch.int8), 64, "K differs"),  # packed for another width
])
def test_the_operator_refuses_mismatched_inputs(a, k, message):
    with pytest.raises(RuntimeError, match=message):
        amx.matmul(a, amx.pack(torch.zeros(64, k, dtype=torch.int8)))


@pytest.mark.skipif(not int8_supported(), reason="this torch build has no CPU int8 matmul")
def test_shapes_the_tiles_do_not_fit_run_on_int_mm():
    w = torch.randint(-127, 128, (40, 24), dtype=torch.int8)  # not multiples of 64, like TINY test models
    weight = _mm_weight(w)
    assert weight.shape == (24, 40)  # (in, out): torch._int_mm's layout
    a = torch.randint(-127, 128, (5, 24), dtype=torch.int8)
    assert torch.equal(_mm(a, weight), a.int() @ w.int().t())


def test_a_failing_compiler_means_int_mm_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBERTAOPS_HOME", str(tmp_path))  # an empty kernel cache: it must compile
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    monkeypatch.setattr(amx, "cpu_flags", lambda: frozenset({"amx_int8", "amx_tile"}))
    for fn in (amx.available, amx._library):
        fn.cache_clear()
    try:
        with pytest.warns(UserWarning, match="AMX kernel unavailable"):
            assert not amx.available()
        assert not list(tmp_path.glob("kernels/*.so"))
    finally:
        for fn in (amx.available, amx._library):
            fn.cache_clear()


def test_building_a_kernel_deletes_kernels_unused_for_30_days(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBERTAOPS_HOME", str(tmp_path))  # an empty kernel cache: it must compile
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    stale, recent = kernels / "amx_int8_op-stale.so", kernels / "amx_int8-recent.so"
    layer, other = kernels / "int8_layer-stale.so", kernels / "x.so"  # not this builder's to delete
    for path, age_days in ((stale, 31), (recent, 29), (layer, 400), (other, 400)):
        path.write_bytes(b"")
        os.utime(path, (time.time() - age_days * 86400,) * 2)
    try:
        built = amx.build(amx.SOURCE.read_text(), op=False)  # the C functions only: quick, and no AMX CPU needed
    except OSError as exc:
        pytest.skip(f"no C compiler for the kernel here ({exc})")
    assert not stale.exists() and recent.exists() and layer.exists() and other.exists()
    assert built.exists() and built.parent == kernels
    os.utime(recent, (time.time() - 31 * 86400,) * 2)
    assert amx.build(amx.SOURCE.read_text(), op=False) == built  # cached: nothing built, so nothing pruned
    assert recent.exists() and built.stat().st_mtime > time.time() - 60  # and the one in use is touched


def test_int_mm_forced_by_the_environment(monkeypatch):
    monkeypatch.setenv("ROBERTAOPS_INT8_MATMUL", "int_mm")
    amx.available.cache_clear()
    try:
        assert not amx.available()
    finally:
        amx.available.cache_clear()


@needs_amx
def test_an_int8_model_gives_the_same_vectors_on_amx_and_int_mm(default_model_dir, monkeypatch):
    texts = ["A man is playing a guitar on the street.", "short", "It was a dark and stormy night; the rain fell."]
    on_amx = ro.load(default_model_dir, dtype="int8")
    layer = on_amx.runner.model.encoder.layers[0]
    assert layer.weights().qkv[0].dim() == 4  # MiniLM's 384 / 1152 / 1536 widths fit the tiles
    assert on_amx.info()["matmul"] == "amx"
    monkeypatch.setattr(amx, "available", lambda: False)
    on_int_mm = ro.load(default_model_dir, dtype="int8")
    assert on_int_mm.runner.model.encoder.layers[0].weights().qkv[0].dim() == 2
    assert on_int_mm.info()["matmul"] == "int_mm"
    a, b = on_amx.embed(texts), on_int_mm.embed(texts)
    # The same integer sums; only the compiled code around them may round differently.
    assert abs(a - b).max() < 1e-5
