"""`robertaops distill`: the student starts as the teacher's spread blocks, learns from soft labels, reports deltas."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import robertaops as ro
from robertaops import cli
from robertaops.errors import InvalidInputError
from robertaops.model.checkpoint import build_model
from robertaops.training.distill import block_outputs, layer_map, make_student


def test_layer_map_spreads_blocks_and_keeps_the_last():
    assert layer_map(6, 3) == [0, 2, 5]  # round(2.5) == 2: even spacing, the last block always kept
    assert layer_map(12, 4) == [0, 4, 7, 11]
    assert layer_map(6, 1) == [5] and layer_map(2, 2) == [0, 1]
    with pytest.raises(InvalidInputError, match="between 1 and the teacher's 2"):
        layer_map(2, 3)


def test_student_starts_as_the_teachers_blocks(trained_classifier):
    teacher = build_model(trained_classifier[0])
    student, mapping = make_student(teacher, 1)
    student.eval()  # no dropout: compare the blocks themselves
    assert student.cfg.num_hidden_layers == 1 and mapping == [teacher.cfg.num_hidden_layers - 1]
    ids = torch.tensor([[0, 713, 1569, 21, 372, 2]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        t_blocks = block_outputs(teacher, ids, mask)
        assert torch.allclose(t_blocks[-1], teacher(ids, mask), atol=1e-6)  # the same forward, blocks kept
        # Embeddings are shared: the student's only block applied to them equals the teacher's last block applied
        # to the same embeddings.
        x = teacher.encoder.embeddings(ids, mask)
        assert torch.allclose(student.encoder.layers[0](x, None), teacher.encoder.layers[mapping[0]](x, None))
    assert torch.equal(student.classifier.out.weight, teacher.classifier.out.weight)


def test_distill_cli(trained_classifier, sentiment_files, tmp_path):
    teacher, _ = trained_classifier
    train, dev = sentiment_files
    out = tmp_path / "student"
    result = CliRunner().invoke(cli.app, [
        "distill", "--teacher", str(teacher), "--train", str(train), "--dev", str(dev), "--text-column", "sentence",
        "--layers", "1", "--epochs", "6", "--batch-size", "8", "--lr", "3e-3", "--seed", "0", "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["layers"] == 1 and 0 < report["compute_ratio"] < 1
    assert report["delta"]["accuracy"] == pytest.approx(report["student_metrics"]["accuracy"]
                                                        - report["teacher_metrics"]["accuracy"], abs=1e-6)
    assert report["student_metrics"]["accuracy"] >= 0.75  # a separable toy task: the student learns it
    student = ro.load(out)
    assert student.config.num_hidden_layers == 1 and student.config.id2label == ro.load(teacher).config.id2label
    assert json.loads((out / "metrics.json").read_text())["teacher"] == str(teacher)
