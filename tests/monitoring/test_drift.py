"""Drift on real data with the default model (300 vs 300 sentences): two samples of SST-2 train -> ok; SST-2 dev vs
test -> not drift; SST-2 train (phrases) vs dev (sentences) -> drift in length; SST-2 vs CoNLL-2003 news -> drift.
Also the readers, the label PSI of a classifier, and the CLI's last JSON line and HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from robertaops.monitoring.drift import Reference, compare, fit, read_texts, verdict

N = 300


@pytest.fixture(scope="module")
def model(default_model_dir):
    import robertaops as ro

    return ro.load(default_model_dir)


@pytest.fixture(scope="module")
def sst2_train(data_dir) -> list[str]:
    return read_texts(data_dir / "sst2" / "train.tsv", limit=2 * N, seed=0)  # halves: disjoint samples


@pytest.fixture(scope="module")
def train_reference(sst2_train, model):
    return fit(sst2_train[::2], model, source="sst2/train.tsv")


@pytest.fixture(scope="module")
def sst2_reference(data_dir, model):
    return fit(read_texts(data_dir / "sst2" / "dev.tsv", limit=N, seed=0), model, source="sst2/dev.tsv")


def test_same_distribution_is_not_drift(sst2_train, model, train_reference):
    """Two disjoint samples of SST-2 train."""
    result = compare(train_reference, sst2_train[1::2], model, permutations=100)
    assert result["verdict"] == "ok", result
    assert result["mmd_p_value"] > 0.05 and result["domain_auc"] < 0.56 and result["psi_lengths"] < 0.1


def test_sst2_train_vs_dev_is_drift_in_length(data_dir, model, train_reference):
    """GLUE's SST-2 train rows are mostly phrase fragments, dev rows whole sentences: the lengths moved (PSI > 0.25)
    and so did the embeddings. The issue expected 'no drift' here; the data says otherwise."""
    result = compare(train_reference, read_texts(data_dir / "sst2" / "dev.tsv", limit=N, seed=1), model,
                     permutations=100)
    assert result["verdict"] == "drift" and result["psi_lengths"] > 0.25
    assert result["mean_length"]["current"] > 1.5 * result["mean_length"]["reference"]


def test_sst2_dev_vs_test_is_not_drift(data_dir, model, sst2_reference):
    """Whole sentences from the same treebank: no significant MMD, so never 'drift' (AUC sits near 0.6 here)."""
    current = read_texts(data_dir / "sst2" / "test_labeled.tsv", limit=N, seed=1)
    result = compare(sst2_reference, current, model, permutations=100)
    assert result["verdict"] != "drift", result
    assert result["mmd_p_value"] > 0.01 and result["psi_lengths"] < 0.1


def test_sst2_vs_conll_is_drift(data_dir, model, sst2_reference):
    current = read_texts(data_dir / "conll2003" / "valid.txt", limit=N, seed=1)
    result = compare(sst2_reference, current, model, permutations=100)
    assert result["verdict"] == "drift" and result["drift"] is True
    assert result["mmd_p_value"] == pytest.approx(1 / 101, abs=1e-4) and result["domain_auc"] > 0.9
    assert result["centroid_cosine_distance"] > 0.3


def test_reference_round_trip_and_model_check(tmp_path, sst2_reference, make_checkpoint):
    import robertaops as ro

    path = sst2_reference.save(tmp_path / "ref.npz")
    back = Reference.load(path)
    np.testing.assert_array_equal(back.embeddings, sst2_reference.embeddings)
    assert back.meta == sst2_reference.meta and back.components.shape == (10, 384)
    other = ro.load(make_checkpoint("bert", "base")[0])
    with pytest.raises(Exception, match="embeddings of different models cannot be compared"):
        compare(back, ["a text"] * 20, other)


def test_classifier_labels_psi(make_checkpoint):
    """A classifier's reference keeps its label distribution; the same texts give PSI 0, and the label PSI of a
    different set equals the PSI of the two label histograms computed here."""
    import robertaops as ro
    from robertaops.monitoring.stats import psi

    m = ro.load(make_checkpoint("roberta", "sequence_classification", seed=3)[0])
    texts = [f"review number {i} says the film was {'great' if i % 3 else 'awful'}" for i in range(60)]
    ref = fit(texts, m)
    assert ref.labels == list(m.config.id2label) and ref.label_fractions.sum() == pytest.approx(1.0)
    assert compare(ref, texts, m, permutations=20)["psi_labels"] == pytest.approx(0.0, abs=1e-9)
    others = [f"a completely different sentence about {w}" for w in ("cats", "stocks", "rain") * 20]
    predicted = [r[0]["label"] for r in m.classify(others, top_k=1)]
    frac = np.array([predicted.count(lab) / len(predicted) for lab in ref.labels])
    assert compare(ref, others, m, permutations=20)["psi_labels"] == pytest.approx(psi(ref.label_fractions, frac),
                                                                                   abs=1e-4)


def test_readers(tmp_path, data_dir):
    conll = read_texts(data_dir / "conll2003" / "valid.txt")
    assert conll[0] == "CRICKET - LEICESTERSHIRE TAKE OVER AT TOP AFTER INNINGS VICTORY ."
    (tmp_path / "a.jsonl").write_text('{"text": "one"}\n\n{"text": "two"}\n"three"\n')
    assert read_texts(tmp_path / "a.jsonl") == ["one", "two", "three"]
    (tmp_path / "b.csv").write_text('id,body\n1,"hello, world"\n2,bye\n')
    assert read_texts(tmp_path / "b.csv", column="body") == ["hello, world", "bye"]
    with pytest.raises(Exception, match="no text column"):
        read_texts(tmp_path / "b.csv")
    assert len(read_texts(data_dir / "sst2" / "dev.tsv", limit=50, seed=3)) == 50


def test_verdict_rules():
    base = {"mmd_p_value": 0.5, "domain_auc": 0.5, "psi_lengths": 0.01, "psi_labels": None}
    assert verdict(base)["verdict"] == "ok"
    assert verdict({**base, "mmd_p_value": 0.001})["verdict"] == "warning"  # significant but tiny effect
    assert verdict({**base, "mmd_p_value": 0.001, "domain_auc": 0.7})["verdict"] == "drift"
    assert verdict({**base, "psi_labels": 0.3})["verdict"] == "drift"
    assert verdict({**base, "psi_lengths": 0.2})["signals"] == ["psi_lengths > 0.1"]


def test_cli_report_last_line_json_and_html(tmp_path, data_dir, default_model_dir):
    from robertaops import cli

    runner = CliRunner()
    ref = tmp_path / "ref.npz"
    out = runner.invoke(cli.app, ["drift", "fit", "--data", str(data_dir / "sst2" / "dev.tsv"), "--output", str(ref),
                                  "--model", str(default_model_dir), "--max-rows", "60"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli.app, ["drift", "report", "--reference", str(ref), "--current",
                                  str(data_dir / "conll2003" / "valid.txt"), "--max-rows", "60", "--permutations",
                                  "50", "--html", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["verdict"] == "drift" and last["reference_rows"] == 60 and last["current_rows"] == 60
    page = (tmp_path / "r.html").read_text()
    assert "verdict: drift" in page and page.count("data:image/png;base64,") == 3  # lengths, PCA, MMD (no labels)
    bad = runner.invoke(cli.app, ["drift", "report", "--reference", str(tmp_path / "none.npz"), "--current",
                                  str(ref)])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.output
