"""Online drift in the server: each request feeds the model's rolling window; /metrics exports the statistics."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from robertaops.monitoring.drift import fit

SAME = [f"a short sentence about the weather number {i}" for i in range(60)]
OTHER = [f"ERROR 0x{i:04x} at module {i}: stack trace follows " * 4 for i in range(60)]


def gauge(text: str, statistic: str) -> float:
    m = re.search(rf'robertaops_drift_score{{model="all-MiniLM-L6-v2",statistic="{statistic}"}} (\S+)', text)
    assert m, f"no {statistic} gauge"
    return float(m.group(1))


@pytest.fixture(scope="module")
def reference(default_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("drift") / "ref.npz"
    fit(SAME, default_model).save(path)
    return path


@pytest.mark.parametrize("texts, drifted", [(SAME, False), (OTHER, True)])
def test_drift_gauges_follow_the_traffic(make_app, reference, texts, drifted):
    app = make_app(names=["all-MiniLM-L6-v2"], drift_references=f"all-MiniLM-L6-v2={reference}", drift_window=50)
    with TestClient(app) as client:
        for i in range(0, 60, 10):
            assert client.post("/embed", json={"inputs": texts[i:i + 10]}).status_code == 200
        metrics = client.get("/metrics").text
    assert 'robertaops_drift_window_inputs{model="all-MiniLM-L6-v2"} 50.0' in metrics  # the last 50 of 60
    distance, length_psi = gauge(metrics, "centroid_distance"), gauge(metrics, "length_psi")
    if drifted:
        assert distance > 0.3 and length_psi > 0.25
    else:
        assert distance < 0.02 and length_psi < 0.1


def test_bad_drift_reference_is_refused(make_app, tmp_path):
    from robertaops.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="NAME=REF.npz"):
        make_app(names=["all-MiniLM-L6-v2"], drift_references="nope=ref.npz")
    with pytest.raises(InvalidInputError, match="drift fit"):
        make_app(names=["all-MiniLM-L6-v2"], drift_references=f"all-MiniLM-L6-v2={tmp_path / 'missing.npz'}")
