"""The int8 layer compiled ahead of time (model/aot_layer.py): the same numbers as the eager layer on every layout,
a library per layout cached on disk, and the eager layer for what it does not cover or cannot compile."""

from __future__ import annotations

import os
import time

import pytest
import torch

from robertaops.model import aot_layer
from robertaops.model.aot_layer import AotStep
from robertaops.model.encoder import Unpadded
from robertaops.model.quantize import _int8_layer, _layer_step, _tiny_int8_encoder, int8_supported

pytestmark = pytest.mark.skipif(not int8_supported() or not isinstance(_layer_step(), AotStep),
                                reason="no int8 matmul, or AOTInductor is unavailable here")


def inputs(hidden: int):
    """Every layout: (x, attn_bias, unpadded) for no padding, a little (run padded) and unpadded."""
    torch.manual_seed(0)
    x = torch.randn(3, 11, hidden)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    bias = mask.bool()[:, None, None, :]
    unpadded = Unpadded(mask.reshape(-1).nonzero().squeeze(1), 3, 11)
    return {"dense": (x, None, None), "masked": (x, bias, None), "unpadded": (unpadded.rows(x), bias, unpadded)}


@pytest.fixture
def weights():
    return _tiny_int8_encoder().layers[0].weights()


def test_every_layout_matches_the_eager_layer(weights):
    """Up to float rounding, which can move an activation across an int8 step (then one token's row moves by a
    step's effect)."""
    step = AotStep(fallback=lambda *a: pytest.fail("fell back"))
    with torch.inference_mode():
        for layout, args in inputs(64).items():
            got, want = step(*args, weights), _int8_layer(*args, weights)
            assert got.shape == want.shape == args[0].shape, layout
            diff = (got - want).abs().amax(-1).flatten()  # per token
            assert (diff > 1e-4).sum() <= 1 and diff.max() < 5e-2, (layout, diff)
    assert sorted(key[0] for key in step._libraries) == ["dense", "masked", "unpadded"]


def test_one_sequence_and_one_token_run_on_the_same_library(weights):
    """The batch's sizes are dynamic down to 1 (exported on 2 x 3): no library of their own."""
    step = AotStep(fallback=lambda *a: pytest.fail("fell back"))
    torch.manual_seed(1)
    with torch.inference_mode():
        for shape in ((1, 1, 64), (1, 9, 64), (5, 2, 64)):
            x = torch.randn(shape)
            assert (step(x, None, None, weights) - _int8_layer(x, None, None, weights)).abs().max() < 5e-2
    assert len(step._libraries) == 1


def test_a_full_attention_mask_runs_the_fallback(weights):
    """A (B, 1, T, T) mask (packed sequences) is not a layout the libraries take: the fallback runs it."""
    calls = []
    step = AotStep(fallback=lambda *a: calls.append(a) or _int8_layer(*a))
    x = torch.randn(2, 4, 64)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool).tril()
    with torch.inference_mode():
        assert torch.equal(step(x, mask, None, weights), _int8_layer(x, mask, None, weights))
    assert len(calls) == 1 and not step._libraries


def test_a_second_process_loads_the_library_instead_of_compiling(weights, monkeypatch):
    x = torch.randn(2, 5, 64)
    with torch.inference_mode():
        first = AotStep(fallback=_int8_layer)(x, None, None, weights)  # compiled, or cached already
        monkeypatch.setattr(aot_layer, "_compile", lambda *a: pytest.fail("compiled again"))
        second = AotStep(fallback=_int8_layer)(x, None, None, weights)  # a new step: from disk
    assert torch.equal(first, second)


def test_a_layout_that_fails_to_compile_warns_once_and_runs_the_fallback(weights, monkeypatch, tmp_path):
    monkeypatch.setenv("ROBERTAOPS_HOME", str(tmp_path))  # an empty cache: it must compile

    def broken(*args):
        raise RuntimeError("no compiler today")

    monkeypatch.setattr(aot_layer, "_export_and_compile", broken)
    step = AotStep(fallback=_int8_layer)
    x = torch.randn(2, 5, 64)
    with torch.inference_mode(), pytest.warns(UserWarning, match="did not compile ahead of time.*no compiler today"):
        got = step(x, None, None, weights)
    assert torch.equal(got, _int8_layer(x, None, None, weights)) and step.falls_back()
    with torch.inference_mode():
        step(x, None, None, weights)  # the failure is remembered: no second attempt, no second warning


def test_the_library_is_named_by_what_decides_its_code(weights):
    """Another activation, LayerNorm eps or attention dtype is another library; the same layer is the same one."""
    names = set()
    for w in (weights, weights, weights._replace(attn_dtype=torch.float32),
              weights._replace(ffn_norm=(*weights.ffn_norm[:2], 1e-12))):
        shape = aot_layer._shape("masked", w, 64)
        names.add(aot_layer._digest(shape))
    assert len(names) == 3


def test_a_library_built_on_one_thread_still_runs_on_the_callers_threads(weights, monkeypatch, tmp_path):
    """Where a library compiles must not decide how it runs: built on one thread (a server worker, a test), its
    loops are still OpenMP loops over the caller's threads. (Left to inductor, it had none: 0.74-0.80x on two.)"""
    monkeypatch.setenv("ROBERTAOPS_HOME", str(tmp_path))  # an empty cache: it must compile
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        aot_layer.load("dense", weights, 64)
    finally:
        torch.set_num_threads(before)
    (library,) = (tmp_path / "kernels").glob("int8_layer-*.so")
    assert b"GOMP_parallel" in library.read_bytes()  # it imports libgomp's parallel-region entry point


def test_building_a_library_deletes_those_unused_for_30_days(weights, monkeypatch, tmp_path):
    monkeypatch.setenv("ROBERTAOPS_HOME", str(tmp_path))
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    stale, recent, other = kernels / "int8_layer-stale.so", kernels / "int8_layer-recent.so", kernels / "x.so"
    for path, age_days in ((stale, 31), (recent, 29), (other, 400)):
        path.write_bytes(b"")
        os.utime(path, (time.time() - age_days * 86400,) * 2)
    aot_layer.load("dense", weights, 64)  # compiles (an empty cache), then prunes
    assert not stale.exists() and recent.exists() and other.exists()
    assert len(list(kernels.glob("int8_layer-*.so"))) == 2  # the recent one and the new one
