"""/search and /documents on named indexes: results equal the Python API's, admin-only writes that later searches
see, rerank by a served cross-encoder, and one test per error status (404 index, 404 document, 409 stale, 403)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from serving_helpers import error

from robertaops.search import writer
from robertaops.search.index import Index
from robertaops.search.sources import Doc
from robertaops.serving.auth import add_key

DEFAULT = "all-MiniLM-L6-v2"
DOCS = [Doc("paris", "Paris is the capital of France.", "Paris", {"lang": "fr"}),
        Doc("cats", "Cats are small domesticated mammals.", "Cats", {"lang": "en"}),
        Doc("python", "Python is a programming language.", "", {"lang": "en"})]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, models):
    root = tmp_path_factory.mktemp("indexes")
    writer.build(root / "main", [DOCS], models[DEFAULT], None, progress=False)
    writer.build(root / "other", [DOCS], models["mlm"], None, progress=False)  # built with a model not served below
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    return path, add_key(path, ["infer"], "app"), add_key(path, ["admin"], "ops")


@pytest.fixture(scope="module")
def client(make_app, dirs, keys):
    app = make_app(names=[DEFAULT, "reranker"], api_keys=keys[0],
                   indexes=[f"main={dirs / 'main'}", f"other={dirs / 'other'}"])
    with TestClient(app) as c:
        yield c


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}




@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_search_equals_python_api(client, keys, dirs, models, mode):
    r = client.post("/search", json={"query": "capital of France", "mode": mode, "k": 2}, headers=auth(keys[1]))
    assert r.status_code == 200, r.text
    expected = Index.open(dirs / "main").search("capital of France", mode=mode, k=2, model=models[DEFAULT])
    assert [h["id"] for h in r.json()["hits"]] == [h["id"] for h in expected]
    assert [h["score"] for h in r.json()["hits"]] == pytest.approx([h["score"] for h in expected], abs=1e-5)
    assert r.json()["hits"][0]["id"] == "paris" and r.json()["index"] == "main"


def test_filter_and_rerank(client, keys, models):
    r = client.post("/search", json={"query": "animals", "filter": {"lang": "en"}, "rerank": "reranker", "k": 3},
                    headers=auth(keys[1]))
    hits = r.json()["hits"]
    assert r.status_code == 200 and {h["metadata"]["lang"] for h in hits} == {"en"}
    ranks = models["reranker"].rerank("animals", [f"{h['title']} {h['text']}".strip() for h in hits])
    assert [h["score"] for h in hits] == pytest.approx(sorted((x["score"] for x in ranks), reverse=True), abs=1e-5)
    assert all("retrieval_score" in h for h in hits)


def test_documents_add_and_delete_are_admin_and_visible(client, keys):
    doc = {"id": "rome", "title": "Rome", "text": "Rome is the capital of Italy.", "metadata": {"lang": "it"}}
    error(client.post("/documents", json={"documents": [doc]}, headers=auth(keys[1])), 403, "forbidden")
    r = client.post("/documents", json={"index": "main", "documents": [doc]}, headers=auth(keys[2]))
    assert r.status_code == 200 and r.json()["added"] == 1, r.text
    hits = client.post("/search", json={"query": "capital of Italy", "k": 1}, headers=auth(keys[1])).json()["hits"]
    assert hits[0]["id"] == "rome"
    error(client.delete("/documents", params={"ids": ["rome"]}, headers=auth(keys[1])), 403, "forbidden")
    r = client.delete("/documents", params={"ids": ["rome"], "index": "main"}, headers=auth(keys[2]))
    assert r.status_code == 200 and r.json()["deleted"] == 1
    hits = client.post("/search", json={"query": "capital of Italy", "k": 5}, headers=auth(keys[1])).json()["hits"]
    assert "rome" not in [h["id"] for h in hits]
    error(client.delete("/documents", params={"ids": ["rome"]}, headers=auth(keys[2])), 404, "document_not_found")


def test_errors(client, keys):
    assert "'main'" in error(client.post("/search", json={"query": "x", "index": "nope"}, headers=auth(keys[1])),
                             404, "index_not_found")
    message = error(client.post("/search", json={"query": "x", "index": "other"}, headers=auth(keys[1])), 409,
                    "stale_index")
    assert "rebuild" in message
    # a lexical search needs no model, so the same index answers it
    assert client.post("/search", json={"query": "Paris", "index": "other", "mode": "lexical"},
                       headers=auth(keys[1])).status_code == 200
    error(client.post("/search", json={"query": "x", "mode": "semantic"}, headers=auth(keys[1])), 422,
          "invalid_input")
    error(client.post("/search", json={"query": "x"}), 401, "unauthorized")
