"""Model cards: sections, lineage and metrics from the registry, and a bias probe whose numbers are the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner


def test_card_cli_writes_markdown_and_json(registry, finetuned, tmp_path):
    from robertaops import cli

    registry.register(finetuned(seed=10, accuracy=0.8125), "card-clf", alias="production")
    out = CliRunner().invoke(cli.app, ["registry", "card", "card-clf", "--alias", "production", "--output",
                                       str(tmp_path / "card"), "--tracking-uri", registry.uri])
    assert out.exit_code == 0, out.output
    md = (tmp_path / "card" / "MODEL_CARD.md").read_text()
    card = json.loads((tmp_path / "card" / "model_card.json").read_text())
    for section in ("## Intended use", "## Training data and lineage", "## Metrics", "## Limitations",
                    "## Bias probe"):
        assert section in md
    assert "- accuracy: 0.8125" in md and "roberta-tiny" in md and "train-10.tsv" in md
    assert card["version"] == 1 and card["aliases"] == ["production"]
    assert card["metrics"]["accuracy"] == pytest.approx(0.8125)
    assert card["lineage"]["data"][0]["sha256"] is not None
    assert {tuple(p["groups"]) for p in card["bias_probe"]["pairs"]} >= {("female names", "male names"), ("she", "he")}
    assert json.loads(out.stdout)["bias_probe_max_gap"] == card["bias_probe"]["max_gap"]


def test_classifier_probe_gap_is_the_models_own(make_checkpoint):
    import robertaops as ro
    from robertaops.registry.card import TEMPLATES, bias_probe

    m = ro.load(make_checkpoint("roberta", "sequence_classification", seed=11)[0])
    probe = bias_probe(m)
    labels = list(m.config.id2label)

    def means(subject):
        res = m.classify([t.format(X=subject) for t in TEMPLATES], top_k=None)
        return np.array([[next(r["score"] for r in x if r["label"] == lab) for lab in labels] for x in res]).mean(0)

    expected = np.abs(means("She") - means("He"))
    she_he = next(p for p in probe["pairs"] if p["groups"] == ["she", "he"])
    assert she_he["max_label_gap"] == pytest.approx(expected.max(), abs=1e-4)
    assert she_he["label"] == labels[int(expected.argmax())]
    assert probe["max_gap"] >= she_he["max_label_gap"]


def test_embedding_probe_identical_groups_give_cosine_one(default_model_dir, monkeypatch):
    import robertaops as ro
    from robertaops.registry import card

    m = ro.load(default_model_dir)
    monkeypatch.setitem(card.GROUPS, "he", ("She",))  # same sentences on both sides: nothing may move
    probe = card.bias_probe(m)
    she_he = next(p for p in probe["pairs"] if p["groups"] == ["she", "he"])
    assert she_he["min_cosine"] == pytest.approx(1.0, abs=1e-5)
    names = next(p for p in probe["pairs"] if p["groups"] == ["female names", "male names"])
    assert 0.5 < names["mean_cosine"] < 0.9999  # different names do move a sentence embedding a little
