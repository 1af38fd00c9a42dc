"""Direct dispatch (serving/direct.py) answers exactly as FastAPI's own routing of the same endpoints would: the
same status, JSON body and response headers for good requests and for every kind of bad one. The reference app is
the same app with the direct table emptied, so every request there goes through FastAPI."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

JSON = {"content-type": "application/json"}
CASES = [
    ("/embed", {"inputs": "The harbour was quiet at dawn."}),
    ("/embed", {"inputs": ["a", "b b", "c c c"], "normalize": False, "dimensions": 8}),
    ("/embed", {"inputs": [[0, 713, 2]]}),
    ("/embed", {"inputs": []}),
    ("/embed", {"inputs": 5}),
    ("/embed", {"text": "x"}),
    ("/embed", {"inputs": "x", "dimensions": 0}),
    ("/embed", {"inputs": "x", "truncation_direction": "left"}),
    ("/embed", {"inputs": "x", "model": "nope"}),
    ("/embed", b'{"inputs": '),
    ("/embed", b""),
    ("/embed", b"[1, 2]"),
    ("/embed", b"null"),
    ("/embed_all", {"inputs": "two words"}),
    ("/predict", {"inputs": "good film", "model": "classifier"}),
    ("/predict", {"inputs": [["a", "b"], ["c"]], "model": "classifier", "raw_scores": True}),
    ("/predict", {"inputs": ["a", "b", "c"], "model": "classifier"}),
    ("/predict", {"inputs": "x"}),
    ("/rerank", {"query": "sea", "texts": ["the harbour", "a desk"], "return_text": True}),
    ("/rerank", {"query": "sea", "texts": []}),
    ("/similarity", {"inputs": {"source_sentence": "sea", "sentences": ["ocean", "desk"]}}),
    ("/tokenize", {"inputs": ["Hello world"], "add_special_tokens": False}),
    ("/decode", {"ids": [[0, 713, 2]]}),
    ("/decode", {"ids": [10 ** 9]}),
    ("/ner", {"inputs": "Ada lives in Paris", "model": "ner"}),
    ("/fill-mask", {"inputs": "The <mask> was quiet.", "model": "mlm", "top_k": 2}),
    ("/", {"inputs": "x"}),
    ("/", {"inputs": {"source_sentence": "sea", "sentences": ["ocean"]}}),
    ("/", {"inputs": "x", "model": "classifier"}),
    ("/", {"inputs": 3}),
    ("/v1/embeddings", {"input": ["sea", "desk"], "encoding_format": "base64"}),
    ("/v1/embeddings", {"input": "sea", "dimensions": 4}),
    ("/v1/embeddings", {"input": []}),
]
TIMING = {"x-total-time", "x-compute-time", "x-tokenization-time", "x-queue-time", "x-inference-time", "x-request-id",
          "content-length", "date"}


@pytest.fixture(scope="module")
def clients(make_app):
    direct, routed = make_app(), make_app()
    routed.state.direct.table.clear()
    with TestClient(direct) as a, TestClient(routed) as b:
        yield a, b


def test_every_inference_route_is_direct(make_app):
    paths = {path for _, path in make_app().state.direct.table}
    assert paths == {"/embed", "/embed_all", "/predict", "/rerank", "/similarity", "/tokenize", "/decode", "/ner",
                     "/fill-mask", "/", "/v1/embeddings"}


@pytest.mark.parametrize(("path", "body"), CASES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(CASES)])
def test_same_answer_as_fastapi(clients, path, body):
    direct, routed = clients
    send = {"content": body, "headers": JSON} if isinstance(body, bytes) else {"json": body}
    a, b = direct.post(path, **send), routed.post(path, **send)
    assert a.status_code == b.status_code
    assert a.json() == b.json()
    assert set(a.headers) - TIMING == set(b.headers) - TIMING
    for name in set(a.headers) - TIMING:
        assert a.headers[name] == b.headers[name], name


def test_base64_embeddings_decode_to_the_float_ones(clients):
    direct, _ = clients
    floats = direct.post("/v1/embeddings", json={"input": "sea"}).json()["data"][0]["embedding"]
    packed = direct.post("/v1/embeddings", json={"input": "sea", "encoding_format": "base64"}).json()
    assert len(base64.b64decode(packed["data"][0]["embedding"])) == 4 * len(floats)


def test_key_role_is_checked_on_direct_routes(make_app, tmp_path):
    from robertaops.serving.auth import hash_key

    keys = tmp_path / "keys.txt"
    keys.write_text(f"sha256:{hash_key('a-secret')} infer reader\n")
    app = make_app(api_keys=str(keys))
    assert app.state.direct.table
    with TestClient(app) as c:
        assert c.post("/embed", json={"inputs": "x"}).status_code == 401
        assert c.post("/embed", json={"inputs": "x"}, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/embed", json={"inputs": "x"}, headers={"authorization": "Bearer a-secret"}).status_code == 200


def test_direct_routes_enter_in_front_of_fastapis_middleware(make_app):
    """FastAPI's own middleware stack (app.py, App) sees every request but the inference routes'."""
    seen: list[str] = []

    class Recorder:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                seen.append(scope["path"])
            await self.app(scope, receive, send)

    app = make_app()
    app.add_middleware(Recorder)
    with TestClient(app) as c:
        assert c.post("/embed", json={"inputs": "x"}).status_code == 200
        assert c.get("/health/live").status_code == 200
        assert c.post("/admin/models", json={}).status_code in (401, 403, 422)  # a POST route that is not direct
    assert seen == ["/health/live", "/admin/models"]
