"""TEI-compatible routes and our /ner, /fill-mask: shapes as TEI sends them, values equal to the Python API's, and a
batched request equal to the same inputs sent one by one."""

from __future__ import annotations

import json

import numpy as np
import pytest

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Embeddings map text to vectors.", "ünïcödé ✓", ""]
LONG = " ".join(["The old sailor walked along the quiet harbour at dawn."] * 80)  # several windows


def plain(x):
    """What a value looks like after a JSON round trip (numpy scalars and tuples included)."""
    return json.loads(json.dumps(x, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def same(a, b, tol=1e-5) -> bool:
    """Equal structures, floats within `tol` (the server may batch differently: float32 noise)."""
    a, b = plain(a), plain(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol
    return a == b


def post(client, path, body, status=200):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    return r.json()


# -- /embed ----------------------------------------------------------------------------------------------------------
def test_embed_equals_the_python_api(client, default_model):
    out = np.array(post(client, "/embed", {"inputs": TEXTS}), dtype=np.float32)
    np.testing.assert_allclose(out, default_model.embed(TEXTS), atol=1e-6)


def test_embed_single_is_a_list_of_one(client, default_model):
    out = post(client, "/embed", {"inputs": TEXTS[0]})
    assert len(out) == 1 and len(out[0]) == default_model.dimension
    np.testing.assert_allclose(out[0], default_model.embed(TEXTS[0]), atol=1e-6)


def test_embed_batch_equals_singles(client):
    batch = post(client, "/embed", {"inputs": TEXTS})
    singles = [post(client, "/embed", {"inputs": t})[0] for t in TEXTS]
    np.testing.assert_allclose(batch, singles, atol=1e-6)


def test_embed_options(client, default_model):
    raw = post(client, "/embed", {"inputs": TEXTS[:2], "normalize": False})
    np.testing.assert_allclose(raw, default_model.embed(TEXTS[:2], normalize=False), atol=1e-5)
    cls = post(client, "/embed", {"inputs": TEXTS[:2], "pooling": "cls"})
    np.testing.assert_allclose(cls, default_model.embed(TEXTS[:2], pooling="cls"), atol=1e-6)


def test_embed_long_input_is_windowed_or_truncated(client, default_model):
    np.testing.assert_allclose(post(client, "/embed", {"inputs": LONG})[0], default_model.embed(LONG), atol=1e-5)
    cut = post(client, "/embed", {"inputs": LONG, "truncate": True})[0]
    np.testing.assert_allclose(cut, default_model.embed(LONG, truncate=True), atol=1e-5)


def test_embed_dimensions_truncate_and_renormalize(client, default_model):
    out = np.array(post(client, "/embed", {"inputs": TEXTS[:2], "dimensions": 64}))
    full = default_model.embed(TEXTS[:2])[:, :64]
    np.testing.assert_allclose(out, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-6)


def test_embed_accepts_token_ids(client, default_model):
    ids = default_model.tokenize(TEXTS[0])
    by_ids = post(client, "/embed", {"inputs": ids})
    by_text = post(client, "/embed", {"inputs": TEXTS[0]})
    np.testing.assert_allclose(by_ids, by_text, atol=1e-6)
    mixed = post(client, "/embed", {"inputs": [ids, TEXTS[1]]})
    np.testing.assert_allclose(mixed, post(client, "/embed", {"inputs": TEXTS[:2]}), atol=1e-6)


def test_compat_root_embeds(client):
    np.testing.assert_allclose(post(client, "/", {"inputs": TEXTS}), post(client, "/embed", {"inputs": TEXTS}),
                               atol=1e-6)


# -- /predict --------------------------------------------------------------------------------------------------------
def test_predict_single_pair_and_batch(client, models):
    m = models["classifier"]
    single = post(client, "/predict", {"inputs": TEXTS[0], "model": "classifier"})
    assert same(single, m.classify(TEXTS[0], top_k=None))
    assert {"label", "score"} == set(single[0]) and len(single) == 3
    pair = post(client, "/predict", {"inputs": [TEXTS[0], TEXTS[1]], "model": "classifier"})
    assert same(pair, m.classify((TEXTS[0], TEXTS[1]), top_k=None))
    batch = post(client, "/predict", {"inputs": [[TEXTS[0]], [TEXTS[0], TEXTS[1]]], "model": "classifier"})
    assert same(batch, [single, pair])


def test_predict_options(client, models):
    m = models["classifier"]
    out = post(client, "/predict", {"inputs": TEXTS[:1], "model": "classifier", "raw_scores": True, "top_k": 2})
    assert same(out, m.classify(TEXTS[0], top_k=2, raw_scores=True))


def test_predict_batch_equals_singles(client):
    batch = post(client, "/predict", {"inputs": [[t] for t in TEXTS], "model": "classifier"})
    assert same(batch, [post(client, "/predict", {"inputs": t, "model": "classifier"}) for t in TEXTS])


def test_compat_root_predicts_for_a_classifier(client):
    body = {"inputs": TEXTS[0], "model": "classifier"}
    assert same(post(client, "/", body), post(client, "/predict", body))


# -- /rerank, /similarity --------------------------------------------------------------------------------------------
def test_rerank_cross_encoder(client, models):
    body = {"query": "a fox", "texts": TEXTS, "model": "reranker"}
    out = post(client, "/rerank", body)
    assert same(models["reranker"].rerank("a fox", TEXTS), out)
    assert sorted(r["index"] for r in out) == list(range(len(TEXTS))) and "text" not in out[0]
    with_text = post(client, "/rerank", {**body, "return_text": True, "raw_scores": True})
    assert all(r["text"] == TEXTS[r["index"]] for r in with_text)
    assert same(models["reranker"].rerank("a fox", TEXTS, raw_scores=True, return_text=True), with_text)


def test_rerank_by_embeddings(client, default_model):
    out = post(client, "/rerank", {"query": "a fox", "texts": TEXTS})
    expected = default_model.rerank("a fox", TEXTS)
    assert [r["index"] for r in out] == [r["index"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in out], [r["score"] for r in expected], atol=1e-5)


def test_similarity(client, default_model):
    out = post(client, "/similarity", {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS}})
    vectors = default_model.embed(TEXTS)
    np.testing.assert_allclose(out, vectors @ vectors[0], atol=1e-5)
    assert out == pytest.approx(post(client, "/", {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS}}))


def test_similarity_truncate_parameter_is_honoured(client, default_model):
    long_text = " ".join(["Embeddings map text to vectors, and long texts are windowed."] * 60)  # > 256 tokens
    body = {"inputs": {"source_sentence": TEXTS[0], "sentences": [long_text]}}
    windowed = post(client, "/similarity", body)
    truncated = post(client, "/similarity", {**body, "parameters": {"truncate": True}})
    source, whole = default_model.embed([TEXTS[0], long_text])
    cut = default_model.embed(long_text, truncate=True)
    np.testing.assert_allclose(windowed, [whole @ source], atol=1e-5)
    np.testing.assert_allclose(truncated, [cut @ source], atol=1e-5)
    assert abs(windowed[0] - truncated[0]) > 1e-4


# -- /tokenize, /decode ----------------------------------------------------------------------------------------------
def test_tokenize(client, default_model):
    out = post(client, "/tokenize", {"inputs": "Hello wörld"})
    assert len(out) == 1
    tokens = out[0]
    assert [t["id"] for t in tokens] == default_model.tokenize("Hello wörld")
    assert tokens[0] == {"id": tokens[0]["id"], "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert all("Hello wörld"[t["start"]:t["stop"]] == t["text"] for t in tokens if not t["special"])
    bare = post(client, "/tokenize", {"inputs": ["Hello wörld", "x"], "add_special_tokens": False})
    assert len(bare) == 2
    assert [t["id"] for t in bare[0]] == default_model.tokenize("Hello wörld", add_special_tokens=False)


def test_tokenize_roberta_offsets(client):
    """Byte-level BPE: the text is the input's characters (offsets trimmed of the leading space), not 'Ġworld'."""
    tokens = post(client, "/tokenize", {"inputs": "Hello world, café", "model": "classifier"})[0]
    assert [t["text"] for t in tokens] == ["<s>", "Hello", "world", ",", "café", "</s>"]
    assert [(t["start"], t["stop"]) for t in tokens] == [(None, None), (0, 5), (6, 11), (11, 12), (13, 17),
                                                          (None, None)]


def test_decode(client, default_model):
    ids = default_model.tokenize("hello world")
    assert post(client, "/decode", {"ids": ids}) == ["hello world"]
    assert post(client, "/decode", {"ids": [ids, ids[1:2]]}) == ["hello world", "hello"]
    kept = post(client, "/decode", {"ids": ids, "skip_special_tokens": False})[0]
    assert kept.startswith("[CLS]")


# -- /ner, /fill-mask (ours) -----------------------------------------------------------------------------------------
def test_ner(client, models):
    texts = ["My name is Wolfgang and I live in Berlin.", "Paris"]
    assert same(post(client, "/ner", {"inputs": texts, "model": "ner"}), models["ner"].ner(texts))
    single = post(client, "/ner", {"inputs": texts[0], "model": "ner", "aggregation": "none"})
    assert same(single, models["ner"].ner(texts[0], aggregation="none"))


def test_fill_mask(client, models):
    texts = ["Paris is the <mask> of France.", "A <mask> day."]
    assert same(post(client, "/fill-mask", {"inputs": texts, "model": "mlm", "top_k": 3}),
                models["mlm"].fill_mask(texts, top_k=3))
    assert same(post(client, "/fill-mask", {"inputs": texts[0], "model": "mlm"}), models["mlm"].fill_mask(texts[0]))


# -- /info -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "kind"), [
    ("all-MiniLM-L6-v2", "embedding"), ("classifier", "classifier"), ("reranker", "reranker"),
    ("ner", "token_classifier"), ("mlm", "fill_mask"),
])
def test_info(client, models, name, kind):
    r = client.get("/info", params={"model": name} if name != "all-MiniLM-L6-v2" else None)
    assert r.status_code == 200
    info = r.json()
    assert list(info["model_type"]) == [kind]
    assert info["max_input_length"] == models[name].max_length
    assert info["model_sha"] == models[name].weights_sha256
    assert info["models"][0] == "all-MiniLM-L6-v2"
    for key in ("model_id", "model_dtype", "max_concurrent_requests", "max_batch_tokens", "max_client_batch_size",
                "version"):
        assert key in info
    assert info["matmul"] == models[name].matmul and info["int8_layer"] is None  # float32 models
    if kind == "classifier":
        assert info["model_type"]["classifier"]["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}


def test_embed_all_is_every_token_state(client, default_model):
    texts = ["A man is playing a guitar.", "short"]
    r = client.post("/embed_all", json={"inputs": texts})
    assert r.status_code == 200, r.text
    got = r.json()
    expected = default_model.embed_all(texts)
    assert [len(g) for g in got] == [len(ids) for ids in default_model.tokenize(texts)]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.array(g), e, atol=1e-5)
    single = client.post("/embed_all", json={"inputs": "short"}).json()
    np.testing.assert_allclose(np.array(single[0]), expected[1], atol=1e-5)  # TEI: a list per input, always
