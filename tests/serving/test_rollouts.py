"""Canary and shadow rollouts: sticky routing, shadow answers never returned, automatic rollback, promotion."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

import robertaops as ro
from robertaops.errors import InvalidInputError
from robertaops.serving.auth import add_key
from robertaops.serving.rollouts import Rollout, RolloutSpec, agreement

TEXTS = [f"review number {i}: the film was {'great' if i % 2 else 'dull'} and long" for i in range(12)]


# -- the rollout itself, no HTTP ------------------------------------------------------------------------------------
def test_canary_is_sticky_and_takes_its_fraction():
    rollout = Rollout(RolloutSpec("a", "b", fraction=0.3))
    picks = [rollout.picks_candidate(f"user-{i}", None) for i in range(4000)]
    assert 0.27 < sum(picks) / len(picks) < 0.33
    assert picks == [rollout.picks_candidate(f"user-{i}", None) for i in range(4000)]  # same user, same side
    assert not any(Rollout(RolloutSpec("a", "b", fraction=0.0)).picks_candidate(f"u{i}", None) for i in range(200))
    assert all(Rollout(RolloutSpec("a", "b", fraction=1.0)).picks_candidate(f"u{i}", None) for i in range(200))
    by_header = Rollout(RolloutSpec("a", "b", fraction=0.5, sticky="header:X-User"))
    first = [by_header.picks_candidate("same-key", {"x-user": f"u{i}"}) for i in range(200)]
    assert 0 < sum(first) < 200 and first == [by_header.picks_candidate(None, {"x-user": f"u{i}"}) for i in range(200)]


def test_rollback_on_error_rate_and_latency_within_the_window():
    now = [0.0]
    spec = RolloutSpec("a", "b", max_error_rate=0.2, min_requests=10, window_seconds=30)
    rollout = Rollout(spec, clock=lambda: now[0])
    for _ in range(8):
        assert rollout.observe("candidate", True, 0.01) is None
    assert rollout.observe("candidate", False, 0.01) is None  # 1 of 9: under min_requests
    assert rollout.observe("candidate", False, 0.01) is None  # 2 of 10 = 20%: not over
    now[0] = 31.0  # the window moves on: old outcomes no longer count
    for _ in range(9):
        assert rollout.observe("candidate", False, 0.01) is None
    assert "error rate 100.0%" in rollout.observe("candidate", False, 0.01)
    assert rollout.state == "rolled_back" and not rollout.picks_candidate("u", None)

    slow = Rollout(RolloutSpec("a", "b", max_p99_ms=50, min_requests=5), clock=lambda: 0.0)
    for _ in range(4):
        slow.observe("candidate", True, 0.2)
    assert "p99 latency 200 ms" in slow.observe("candidate", True, 0.2)


@pytest.mark.parametrize("bad", [dict(mode="blue"), dict(fraction=1.5), dict(sticky="cookie"), dict(candidate="a")])
def test_bad_specs_are_refused(bad):
    with pytest.raises(InvalidInputError):
        RolloutSpec(**{"model": "a", "candidate": "b", **bad})


def test_agreement_by_task():
    assert agreement("classify", [[{"label": "pos"}], [{"label": "neg"}]],
                     [[{"label": "pos"}], [{"label": "pos"}]])[0] == [1.0, 0.0]
    agree, cosines = agreement("embed", [[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.01], [0.0, 1.0]])
    assert agree == [1.0, 0.0] and cosines[0] == pytest.approx(0.99995, abs=1e-5) and cosines[1] == 0.0


# -- over HTTP ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_classifiers(make_checkpoint):
    """Two classifiers with the same labels and different weights, loaded fresh (tests may break the second)."""
    return ro.load(make_checkpoint("roberta", "sequence_classification")[0]), \
        ro.load(make_checkpoint("roberta", "sequence_classification", seed=1)[0])


@pytest.fixture()
def server(two_classifiers, tmp_path):
    from robertaops.serving.app import create_app
    from robertaops.serving.backend import Backend
    from robertaops.serving.metrics import Metrics
    from robertaops.settings import Settings

    keys = tmp_path / "keys.txt"
    headers = {"Authorization": f"Bearer {add_key(keys, ['admin'])}"}
    served = {"clf": two_classifiers[0], "clf2": two_classifiers[1]}
    settings = Settings(models=list(served), api_keys=keys)
    with TestClient(create_app(settings, Backend(settings, models=served, metrics=Metrics()))) as client:
        yield client, headers


def predict(client, headers, text, user="anyone"):
    r = client.post("/predict", json={"inputs": text, "model": "clf"}, headers={**headers, "x-user": user})
    assert r.status_code == 200, r.text
    return r


def wait_for(client, headers, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snapshot = client.get("/admin/rollouts/clf", headers=headers).json()
        if condition(snapshot):
            return snapshot
        time.sleep(0.05)
    raise AssertionError(f"rollout never reached the condition: {snapshot}")


def test_canary_routes_sticky_users_to_the_candidate(server, two_classifiers):
    client, headers = server
    r = client.post("/admin/rollouts", json={"model": "clf", "candidate": "clf2", "fraction": 0.5,
                                              "sticky": "header:x-user"}, headers=headers)
    assert r.status_code == 201, r.text
    served = {}
    for i in range(16):
        r = predict(client, headers, TEXTS[0], user=f"u{i}")
        served[i] = r.headers.get("x-served-by", "clf")
        expected = two_classifiers[1 if served[i] == "clf2" else 0].classify(TEXTS[0], top_k=None)
        assert [p["label"] for p in r.json()] == [p["label"] for p in expected]
        assert r.json()[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)
    assert set(served.values()) == {"clf", "clf2"}
    assert all(predict(client, headers, TEXTS[1], user=f"u{i}").headers.get("x-served-by", "clf") == served[i]
               for i in range(16))
    snapshot = client.get("/admin/rollouts/clf", headers=headers).json()
    assert snapshot["windows"]["candidate"]["requests"] == 2 * sum(v == "clf2" for v in served.values())
    assert 'robertaops_rollout_requests_total{model="clf",outcome="ok",role="candidate"' in client.get("/metrics").text


def test_shadow_never_changes_a_response_and_measures_agreement(server, two_classifiers):
    client, headers = server
    before = [predict(client, headers, t).content for t in TEXTS]
    assert client.post("/admin/rollouts", json={"model": "clf", "candidate": "clf2", "mode": "shadow"},
                       headers=headers).status_code == 201
    after = [predict(client, headers, t) for t in TEXTS]
    assert [r.content for r in after] == before and not any("x-served-by" in r.headers for r in after)
    snapshot = wait_for(client, headers, lambda s: s["shadow"]["compared"] == len(TEXTS))
    primary, candidate = (m.classify(TEXTS, top_k=None) for m in two_classifiers)
    expected = sum(a[0]["label"] == b[0]["label"] for a, b in zip(primary, candidate, strict=True)) / len(TEXTS)
    assert snapshot["shadow"]["agreement"] == pytest.approx(expected)
    assert snapshot["state"] == "active" and snapshot["windows"]["candidate"]["error_rate"] == 0.0


@pytest.mark.parametrize("mode", ["canary", "shadow"])
def test_a_failing_candidate_is_rolled_back_and_clients_never_see_it(server, two_classifiers, monkeypatch, mode):
    client, headers = server

    def broken(*args, **kwargs):
        raise RuntimeError("candidate weights are corrupt")

    monkeypatch.setattr(two_classifiers[1], "classify", broken)
    spec = {"model": "clf", "candidate": "clf2", "mode": mode, "fraction": 1.0, "min_requests": 5,
            "max_error_rate": 0.2, "window_seconds": 60}
    assert client.post("/admin/rollouts", json=spec, headers=headers).status_code == 201
    expected = two_classifiers[0].classify(TEXTS[0], top_k=None)
    for _ in range(5):
        r = predict(client, headers, TEXTS[0])
        assert [p["label"] for p in r.json()] == [p["label"] for p in expected] and "x-served-by" not in r.headers
    snapshot = wait_for(client, headers, lambda s: s["state"] == "rolled_back")
    assert "error rate 100.0%" in snapshot["reason"] and snapshot["windows"]["candidate"]["requests"] == 5
    predict(client, headers, TEXTS[0])
    time.sleep(0.1)
    after = client.get("/admin/rollouts/clf", headers=headers).json()
    assert after["windows"]["candidate"]["requests"] == 5  # rolled back: no more traffic to the candidate
    metrics = client.get("/metrics").text
    assert 'robertaops_rollout_rollbacks_total{candidate="clf2",model="clf"} 1.0' in metrics
    assert f'robertaops_rollout_active{{candidate="clf2",mode="{mode}",model="clf"}} 0.0' in metrics


def test_promote_and_admin_errors(server, two_classifiers):
    client, headers = server
    spec = {"model": "clf", "candidate": "clf2", "fraction": 0.0}
    assert client.post("/admin/rollouts", json={**spec, "candidate": "nope"}, headers=headers).status_code == 404
    assert client.post("/admin/rollouts", json=spec, headers=headers).status_code == 201
    assert client.post("/admin/rollouts", json=spec, headers=headers).json()["error_type"] == "conflict"
    assert client.delete("/admin/models/clf2", headers=headers).json()["error_type"] == "conflict"
    r = client.post("/admin/rollouts/clf/promote", headers=headers)
    assert r.status_code == 200 and r.json()["state"] == "promoted"
    expected = two_classifiers[1].classify(TEXTS[2], top_k=None)
    assert predict(client, headers, TEXTS[2]).json()[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)
    assert client.get("/admin/rollouts/clf", headers=headers).json()["error_type"] == "model_not_found"
    assert client.delete("/admin/models/clf2", headers=headers).status_code == 200  # clf keeps its (shared) batcher
    assert predict(client, headers, TEXTS[2]).json()[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-5)


def test_rollouts_from_settings(make_app, models):
    with TestClient(make_app(names=["classifier", "reranker"],
                             rollouts='{"model": "classifier", "candidate": "reranker", "mode": "shadow"}')) as c:
        snapshot = c.get("/admin/rollouts").json()
    assert [(s["model"], s["candidate"], s["mode"]) for s in snapshot] == [("classifier", "reranker", "shadow")]
