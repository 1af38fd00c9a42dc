"""`robertaops quantize`: an int8 checkpoint that loads as int8, answers like the original, and reports the deltas."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

import robertaops as ro
from robertaops import cli
from robertaops.model.quantize import is_quantized


def test_quantize_cli_writes_int8_and_reports_deltas(trained_classifier, sentiment_files, tmp_path):
    source, _ = trained_classifier
    out = tmp_path / "int8"
    result = CliRunner().invoke(cli.app, ["quantize", "--model", str(source), "--output", str(out), "--task",
                                          "classify", "--data", str(sentiment_files[1]), "--text-column", "sentence"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["method"] == "w8a8-per-token" and report["weight_bytes_after"] < report["weight_bytes_before"]
    assert report["delta"]["accuracy"] == report["after"]["accuracy"] - report["before"]["accuracy"]
    assert abs(report["delta"]["accuracy"]) <= 1 / 24 + 1e-9  # 24 dev rows: at most one answer may flip

    int8, fp32 = ro.load(out, dtype="float32"), ro.load(source)
    assert int8.dtype == "int8" and is_quantized(int8.runner.model)  # the checkpoint decides, not the caller
    texts = ["a wonderful, moving film", "dull and far too long"]
    a = np.array([[p["score"] for p in sorted(r, key=lambda p: p["label"])] for r in fp32.classify(texts, top_k=None)])
    b = np.array([[p["score"] for p in sorted(r, key=lambda p: p["label"])] for r in int8.classify(texts, top_k=None)])
    assert np.abs(a - b).max() < 0.05


def test_quantize_needs_task_and_data_together(tiny_roberta, tmp_path):
    result = CliRunner().invoke(cli.app, ["quantize", "--model", str(tiny_roberta), "--output", str(tmp_path / "q"),
                                          "--task", "classify"])
    assert result.exit_code == 2 and "--task and --data go together" in result.output
