"""OpenAI-compatible /v1/embeddings (float and base64, dimensions, token ids) and /v1/models."""

from __future__ import annotations

import base64

import numpy as np

DEFAULT = "all-MiniLM-L6-v2"
TEXTS = ["The food was delicious and the waiter was friendly.", "ünïcödé ✓", ""]


def embeddings(client, status=200, **body):
    r = client.post("/v1/embeddings", json={"model": DEFAULT, **body})
    assert r.status_code == status, r.text
    return r.json()


def test_float_equals_the_python_api(client, default_model):
    out = embeddings(client, input=TEXTS)
    assert out["object"] == "list" and out["model"] == DEFAULT
    assert [d["index"] for d in out["data"]] == [0, 1, 2] and {d["object"] for d in out["data"]} == {"embedding"}
    np.testing.assert_allclose([d["embedding"] for d in out["data"]], default_model.embed(TEXTS), atol=1e-6)
    tokens = sum(len(ids) for ids in default_model.tokenize(TEXTS))
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_base64_decodes_to_the_floats(client):
    floats = embeddings(client, input=TEXTS)["data"]
    packed = embeddings(client, input=TEXTS, encoding_format="base64")["data"]
    for f, p in zip(floats, packed, strict=True):
        decoded = np.frombuffer(base64.b64decode(p["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.asarray(f["embedding"], dtype=np.float32))


def test_single_string_and_batch_agree(client):
    one = embeddings(client, input=TEXTS[0])["data"]
    assert len(one) == 1
    np.testing.assert_allclose(one[0]["embedding"], embeddings(client, input=TEXTS)["data"][0]["embedding"], atol=1e-6)


def test_dimensions_truncate_and_renormalize(client, default_model):
    out = embeddings(client, input=TEXTS[:2], dimensions=32)["data"]
    full = default_model.embed(TEXTS[:2])[:, :32]
    np.testing.assert_allclose([d["embedding"] for d in out], full / np.linalg.norm(full, axis=1, keepdims=True),
                               atol=1e-6)


def test_token_ids(client, default_model):
    """Ids of the served model's tokenizer run as the text they decode to (lossless for lower-case ASCII here:
    MiniLM's tokenizer lower-cases and strips accents, so decode(encode(t)) == t only for such text)."""
    texts = ["the food was delicious.", "embeddings map text to vectors"]
    ids = default_model.tokenize(texts)
    by_ids = embeddings(client, input=ids)["data"]
    np.testing.assert_allclose([d["embedding"] for d in by_ids], default_model.embed(texts), atol=1e-5)
    assert len(embeddings(client, input=ids[0])["data"]) == 1


def test_model_may_be_omitted_or_another(client, models):
    r = client.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 200 and r.json()["model"] == DEFAULT
    other = embeddings(client, input="x", model="mlm")
    assert len(other["data"][0]["embedding"]) == models["mlm"].dimension
    assert embeddings(client, 404, input="x", model="text-embedding-3-small")["error_type"] == "model_not_found"


def test_models(client, models):
    out = client.get("/v1/models").json()
    assert out["object"] == "list"
    assert [m["id"] for m in out["data"]] == list(models)
    assert {m["object"] for m in out["data"]} == {"model"} and all(isinstance(m["created"], int) for m in out["data"])
    assert client.get("/v1/models/classifier").json()["id"] == "classifier"
    assert client.get("/v1/models/nope").status_code == 404
