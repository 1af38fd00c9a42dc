"""`robertaops evaluate` and the `finetune` CLI: metrics through the pipelines, the JSON last line, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from finetune_helpers import write_tsv
from typer.testing import CliRunner

from robertaops import cli
from robertaops.errors import DataError, UnsupportedTaskError
from robertaops.training.evaluate import evaluate
from robertaops.training.metrics import ece, softmax


def test_evaluate_classify_with_ece(trained_classifier, sentiment_files):
    out, result = trained_classifier
    _, dev = sentiment_files
    got = evaluate(str(out), "classify", dev, text_column="sentence")
    m = got["metrics"]
    assert got["n"] == 24 and m["accuracy"] == result["metrics"]["accuracy"]
    assert m["ece"] == pytest.approx(result["metrics"]["ece"], abs=1e-6)  # temperature applied, as in finetune
    assert m["ece_uncalibrated"] == pytest.approx(result["metrics"]["ece_before"], abs=1e-6)
    assert m["temperature"] == pytest.approx(result["metrics"]["temperature"])


def test_unknown_label_is_a_clear_error(trained_classifier, tmp_path):
    out, _ = trained_classifier
    data = write_tsv(tmp_path / "d.tsv", [("a superb plot", "pos"), ("a film", "neutral")])
    with pytest.raises(DataError, match=rf"{data}:3: unknown label 'neutral'; the model knows 'neg', 'pos'"):
        evaluate(str(out), "classify", data, text_column="sentence")


def test_wrong_task_for_model(trained_classifier, tmp_path):
    out, _ = trained_classifier
    with pytest.raises(UnsupportedTaskError, match="needs a token_classification model"):
        evaluate(str(out), "ner", tmp_path / "x.txt")


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_cli_finetune_then_evaluate(tmp_path, tiny_roberta, sentiment_files):
    train, dev = sentiment_files
    runner = CliRunner()
    out = tmp_path / "runs" / "sst"
    r = runner.invoke(cli.app, ["finetune", "classify", "--model", str(tiny_roberta), "--train", str(train),
                                "--dev", str(dev), "--text-column", "sentence", "--label-column", "label",
                                "--epochs", "2", "--lr", "3e-3", "--batch-size", "8", "--output", str(out),
                                "--tracking-uri", "none"])
    assert r.exit_code == 0, r.stderr
    trained = _last_json(r.stdout)
    assert trained["output"] == str(out) and "accuracy" in trained["metrics"]
    r = runner.invoke(cli.app, ["evaluate", "--model", str(out), "--task", "classify", "--data", str(dev),
                                "--text-column", "sentence", "--label-column", "label"])
    assert r.exit_code == 0, r.stderr
    got = _last_json(r.stdout)
    assert got["metrics"]["accuracy"] == trained["metrics"]["accuracy"]
    assert set(got["metrics"]) >= {"accuracy", "macro_f1", "ece"}


def test_cli_bad_row_is_one_error_line(tmp_path, tiny_roberta):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\na good film\tpos\nbroken row\n")
    runner = CliRunner()
    args = ["finetune", "classify", "--model", str(tiny_roberta), "--train", str(bad), "--text-column", "sentence",
            "--output", str(tmp_path / "o"), "--tracking-uri", "none"]
    r = runner.invoke(cli.app, args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{bad}:3:" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_cli_skip_bad_rows_counts(tmp_path, tiny_roberta):
    rows = [(f"a {w} film", lab) for w, lab in [("good", "pos"), ("bad", "neg")] * 4]
    data = write_tsv(tmp_path / "d.tsv", rows)
    data.write_text(data.read_text() + "no tab here\n\tpos\n")
    r = CliRunner().invoke(cli.app, ["finetune", "classify", "--model", str(tiny_roberta), "--train", str(data),
                                     "--dev", str(data), "--skip-bad-rows", "--text-column", "sentence", "--epochs",
                                     "1", "--output", str(tmp_path / "o"), "--tracking-uri", "none"])
    assert r.exit_code == 0, r.stderr
    assert _last_json(r.stdout)["skipped_rows"] == 4  # two in train, the same two in dev


def test_ece_of_calibrated_probs_is_lower_on_overconfident_logits():
    # sanity of the calibration step itself: overconfident logits (x10) get a temperature near 10
    from robertaops.training.calibration import fit_temperature

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1, (2000, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 10, labels)
    assert 7 < t < 13
    assert ece(softmax(true_logits * 10, t), labels) < ece(softmax(true_logits * 10), labels)
