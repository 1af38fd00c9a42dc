"""Admin model load/unload (POST / DELETE /admin/models), auth before the body is read, and TEI's timing headers."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serving_helpers import error

from robertaops.serving.auth import add_key

DEFAULT = "all-MiniLM-L6-v2"




@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    return path, {"Authorization": f"Bearer {add_key(path, ['infer'])}"}, {
        "Authorization": f"Bearer {add_key(path, ['admin'])}"}


@pytest.fixture()
def secured(make_app, keys):
    with TestClient(make_app(names=[DEFAULT], api_keys=keys[0], payload_limit=1000)) as c:
        yield c


def test_load_serve_unload(secured, keys, make_checkpoint):
    import robertaops as ro

    _, infer, admin = keys
    directory, _ = make_checkpoint("roberta", "sequence_classification")
    r = secured.post("/admin/models", json={"name": "clf", "model": str(directory)}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["info"]["task"] == "sequence_classification"
    assert [m["name"] for m in secured.get("/admin/models", headers=admin).json()] == [DEFAULT, "clf"]
    got = secured.post("/predict", json={"inputs": "a fine day", "model": "clf"}, headers=infer).json()
    expected = ro.load(directory).classify("a fine day", top_k=None)
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert np.allclose([p["score"] for p in got], [p["score"] for p in expected], atol=1e-5)
    assert 'model="clf"' in secured.get("/metrics").text

    error(secured.post("/admin/models", json={"name": "clf", "model": str(directory)}, headers=admin), 409,
          "conflict")
    r = secured.delete("/admin/models/clf", headers=admin)
    assert r.status_code == 200 and r.json()["models"] == [DEFAULT]
    error(secured.post("/predict", json={"inputs": "x", "model": "clf"}, headers=infer), 404, "model_not_found")
    assert 'model_info{model="clf"' not in secured.get("/metrics").text


def test_admin_errors(secured, keys, tmp_path):
    _, infer, admin = keys
    assert "only model" in error(secured.delete(f"/admin/models/{DEFAULT}", headers=admin), 409, "conflict")
    error(secured.delete("/admin/models/nope", headers=admin), 404, "model_not_found")
    error(secured.post("/admin/models", json={"name": "x", "model": str(tmp_path)}, headers=infer), 403, "forbidden")
    r = secured.post("/admin/models", json={"name": "x", "model": str(tmp_path / "missing")}, headers=admin)
    assert "does not exist" in error(r, 404, "model_not_found")
    error(secured.post("/admin/models", json={"name": "bad name!", "model": "m"}, headers=admin), 422,
          "invalid_input")
    assert [m["name"] for m in secured.get("/admin/models", headers=admin).json()] == [DEFAULT]


def test_open_server_refuses_model_loading(make_app, tmp_path):
    with TestClient(make_app(names=[DEFAULT])) as c:
        assert "--api-keys" in error(c.post("/admin/models", json={"name": "x", "model": str(tmp_path)}), 403,
                                     "forbidden")


@pytest.mark.parametrize("body, content_type", [(b"{not json", "application/json"), (b"x" * 5000, "application/json"),
                                                (b"a=b", "application/x-www-form-urlencoded")])
def test_no_key_gets_401_before_the_body_is_judged(secured, keys, body, content_type):
    r = secured.post("/embed", content=body, headers={"content-type": content_type})
    error(r, 401, "unauthorized")
    # With a key, the same bodies get their real answer: 400 / 413 / 415.
    r = secured.post("/embed", content=body, headers={"content-type": content_type, **keys[1]})
    assert r.status_code in (400, 413, 415), r.text


def test_timing_headers(client):
    r = client.post("/embed", json={"inputs": ["one text", "and another one"]})
    assert r.status_code == 200
    for name in ("x-total-time", "x-compute-time", "x-tokenization-time", "x-queue-time", "x-inference-time"):
        assert r.headers[name].isdigit(), name
    assert int(r.headers["x-inference-time"]) <= int(r.headers["x-compute-time"]) <= int(r.headers["x-total-time"])
    assert int(r.headers["x-compute-tokens"]) == sum(len(ids) for ids in client.post(
        "/tokenize", json={"inputs": ["one text", "and another one"]}).json())


def test_replace_model_keeps_serving(make_app, make_checkpoint, concurrently):
    """A model replaced under its name (registry alias moved) answers every request, old or new weights."""
    import asyncio

    import robertaops as ro

    first, second = (make_checkpoint("roberta", "sequence_classification", seed=s)[0] for s in (0, 1))
    expected = {ro.load(d).classify("text", top_k=1)[0]["score"] for d in (first, second)}
    app = make_app(names=["classifier"])

    async def scenario(client):
        async def ask():
            r = await client.post("/predict", json={"inputs": "text", "top_k": 1})
            assert r.status_code == 200, r.text
            return r.json()[0]["score"]

        before = await ask()
        answers = asyncio.gather(*(ask() for _ in range(20)))
        info = await app.state.backend.replace_model("classifier", str(second))
        after = await ask()
        return before, await answers, after, info

    before, during, after, info = concurrently(app, scenario)
    assert info["path"] == str(second)
    assert after == pytest.approx(ro.load(second).classify("text", top_k=1)[0]["score"], abs=1e-5)
    assert all(any(abs(a - e) < 1e-5 for e in expected) for a in during)
