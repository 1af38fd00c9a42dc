"""`robertaops warm-up`: builds every layout's int8 library into the kernel cache, reports what runs each model, and
exits 2 when the int8 layers would run eagerly."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import robertaops as ro
from robertaops import cli
from robertaops.model import amx, quantize
from robertaops.model.aot_layer import AotStep


def warm_up(*args: str, code: int = 0):
    result = CliRunner().invoke(cli.app, ["warm-up", *args])
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


@pytest.fixture
def tiny(make_checkpoint) -> str:
    return f"tiny={make_checkpoint('roberta')[0]}"


def test_warm_up_compiles_every_int8_layout_into_the_kernel_cache(tiny):
    if not quantize.int8_compiled():
        pytest.skip("no compiled int8 layer here (no C++ compiler)")
    (model, summary), _ = warm_up("--model", tiny, "--dtype", "int8")
    assert model["model"] == "tiny" and model["dtype"] == "int8" and model["int8_layer"] in ("aot", "torch.compile")
    assert summary["models"] == ["tiny"] and summary["kernels"] == str(amx.cache_dir())
    step = quantize._layer_step()
    if isinstance(step, AotStep):  # the tiny model's three layouts each have a library, built or loaded now
        layer = next(m for m in ro.load(tiny.split("=", 1)[1], dtype="int8").runner.model.modules()
                     if isinstance(m, quantize.Int8Layer))
        qkv = layer.weights().qkv[0].shape  # part of each library's key: the layer's shape
        built = {key[0] for key, library in step._libraries.items() if library is not None and key[3] == qkv}
        assert built == {"dense", "masked", "unpadded"}, step._libraries.keys()
        assert summary["libraries"] >= 3


def test_warm_up_fails_when_int8_layers_would_run_eagerly(tiny, monkeypatch):
    monkeypatch.setattr(quantize, "_LAYER_STEP", quantize._int8_layer)  # what no C++ compiler leaves
    (model, summary), stderr = warm_up("--model", tiny, "--dtype", "int8", code=2)
    assert model["int8_layer"] == "eager" and summary["models"] == ["tiny"]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the int8 layers of tiny run eagerly"), stderr
    assert "C++ compiler" in lines[0]


def test_warm_up_of_a_float_model_reports_no_int8_layer(tiny):
    (model, summary), _ = warm_up("--model", tiny)
    assert model["dtype"] == "float32" and model["int8_layer"] is None and model["matmul"] != "amx"


def test_warm_up_rejects_an_unknown_dtype_in_one_line(tiny):
    _, stderr = warm_up("--model", tiny, "--dtype", "int9", code=2)
    assert stderr.strip() == "error: unknown dtype 'int9'; choose 'float32', 'bfloat16', 'float16', 'int8' or 'auto'"
