"""Model tiering: the small model answers, unsure inputs escalate to the large one (Python API and server)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import robertaops as ro
from robertaops.errors import InvalidInputError

TEXTS = [f"sentence {i}: {'wonderful' if i % 3 else 'awful'} acting, {'long' if i % 2 else 'short'} plot"
         for i in range(16)]


@pytest.fixture(scope="module")
def pair(make_checkpoint):
    small = ro.load(make_checkpoint("roberta", "sequence_classification", seed=2)[0])
    large = ro.load(make_checkpoint("roberta", "sequence_classification", seed=3)[0])
    return small, large


def test_threshold_decides_who_answers(pair):
    small, large = pair
    small_rows, large_rows = small.classify(TEXTS, top_k=None), large.classify(TEXTS, top_k=None)
    confidences = sorted(r[0]["score"] for r in small_rows)
    threshold = confidences[len(confidences) // 2]  # about half of the inputs are below it
    cascade = ro.Cascade(small, large, threshold=threshold)
    got = cascade.classify(TEXTS, top_k=None)
    for row, s, big in zip(got, small_rows, large_rows, strict=True):
        assert row == (big if s[0]["score"] < threshold else s)
    assert cascade.stats.escalated == sum(s[0]["score"] < threshold for s in small_rows) == len(TEXTS) // 2
    assert cascade.stats.escalated_fraction == pytest.approx(0.5)
    assert ro.Cascade(small, large, threshold=0.0).classify(TEXTS, top_k=1) == [r[:1] for r in small_rows]
    assert ro.Cascade(small, large, threshold=1.0).classify(TEXTS[0], top_k=2) == large_rows[0][:2]


def test_incompatible_models_are_refused(pair, make_checkpoint):
    small, _ = pair
    other = ro.load(make_checkpoint("roberta", "sequence_classification", num_labels=2)[0])
    with pytest.raises(InvalidInputError, match="same labels"):
        ro.Cascade(small, other)
    with pytest.raises(InvalidInputError, match="threshold"):
        ro.Cascade(small, small, threshold=1.5)


def test_served_cascade(pair):
    from robertaops.serving.app import create_app
    from robertaops.serving.backend import Backend
    from robertaops.serving.metrics import Metrics
    from robertaops.settings import Settings

    small, large = pair
    settings = Settings(models=["small", "large"],
                        cascades='{"name": "fast", "small": "small", "large": "large", "threshold": 0.5}')
    app = create_app(settings, Backend(settings, models={"small": small, "large": large}, metrics=Metrics()))
    expected = ro.Cascade(small, large, threshold=0.5).classify(TEXTS, top_k=None)
    with TestClient(app) as client:
        r = client.post("/predict", json={"inputs": [[t] for t in TEXTS], "model": "fast"})
        assert r.status_code == 200, r.text
        got = r.json()
        metrics = client.get("/metrics").text
    for row, exp in zip(got, expected, strict=True):
        assert [p["label"] for p in row] == [p["label"] for p in exp]
        assert row[0]["score"] == pytest.approx(exp[0]["score"], abs=1e-5)
    escalated = sum(1 for r in small.classify(TEXTS, top_k=1) if r[0]["score"] < 0.5)
    assert f'robertaops_cascade_escalations_total{{cascade="fast"}} {float(escalated)}' in metrics
    assert f'robertaops_cascade_inputs_total{{cascade="fast"}} {float(len(TEXTS))}' in metrics
