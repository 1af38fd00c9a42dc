"""Similarity matrices and reranking: bi-encoder (cosine of embeddings) and cross-encoder (sigmoid of pair logits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import robertaops as ro

QUERY = "How do plants make food?"
DOCUMENTS = [
    "The stock market fell sharply on Monday.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "Plants need light to grow.",
    "A recipe for chocolate cake.",
    "Chlorophyll absorbs light energy in the leaves of green plants.",
]


# -- similarity -----------------------------------------------------------------------------------------------
def test_similarity_is_the_cosine_of_embeddings(default_model, sentence_transformer):
    a, b = DOCUMENTS[:2], DOCUMENTS
    sim = default_model.similarity(a, b)
    assert sim.shape == (2, len(b))
    ea, eb = default_model.embed(a, normalize=False), default_model.embed(b, normalize=False)
    cosine = (ea / np.linalg.norm(ea, axis=1, keepdims=True)) @ (eb / np.linalg.norm(eb, axis=1, keepdims=True)).T
    np.testing.assert_allclose(sim, cosine, atol=1e-5)
    st = sentence_transformer.encode(a) @ sentence_transformer.encode(b).T
    np.testing.assert_allclose(sim, st, atol=1e-4)
    assert sim[0, 0] == pytest.approx(1.0, abs=1e-5) and sim[1, 1] == pytest.approx(1.0, abs=1e-5)
    assert sim[1, 4] > sim[1, 3]  # photosynthesis is nearer chlorophyll than cake


def test_similarity_single_texts_and_empty_sides(default_model):
    one = default_model.similarity(DOCUMENTS[1], DOCUMENTS[4])
    assert one.shape == (1, 1)
    assert one[0, 0] == pytest.approx(float(default_model.embed(DOCUMENTS[1]) @ default_model.embed(DOCUMENTS[4])),
                                      abs=1e-5)
    assert default_model.similarity([], DOCUMENTS).shape == (0, len(DOCUMENTS))
    assert default_model.similarity(DOCUMENTS, []).shape == (len(DOCUMENTS), 0)


def test_similarity_ignores_the_normalize_default(default_model):
    """Cosine, whatever the model's embedding defaults: a long text is no "more similar" than a short one."""
    sim = default_model.similarity([DOCUMENTS[2], DOCUMENTS[2] * 3], [DOCUMENTS[2]])
    assert np.all(sim <= 1.0 + 1e-5)


# -- bi-encoder rerank --------------------------------------------------------------------------------------------
def test_bi_encoder_rerank_sorts_by_cosine(default_model):
    hits = default_model.rerank(QUERY, DOCUMENTS)
    cosine = default_model.similarity([QUERY], DOCUMENTS)[0]
    assert [h["index"] for h in hits] == list(np.argsort(-cosine, kind="stable"))
    assert [h["score"] for h in hits] == pytest.approx(sorted(cosine.tolist(), reverse=True), abs=1e-6)
    assert {h["index"] for h in hits[:2]} <= {1, 2, 4}  # the plant documents beat stocks and cake
    assert hits[-1]["index"] in (0, 3)
    assert all(set(h) == {"index", "score"} for h in hits)


def test_rerank_return_text_and_top_n(default_model):
    hits = default_model.rerank(QUERY, DOCUMENTS, return_text=True, top_n=2)
    assert len(hits) == 2
    for h in hits:
        assert h["text"] == DOCUMENTS[h["index"]]
    assert hits == [dict(h, text=DOCUMENTS[h["index"]]) for h in default_model.rerank(QUERY, DOCUMENTS)[:2]]


def test_rerank_edge_cases(default_model):
    assert default_model.rerank(QUERY, []) == []
    single = default_model.rerank(QUERY, [DOCUMENTS[1]])
    assert [h["index"] for h in single] == [0]
    duplicates = default_model.rerank(QUERY, [DOCUMENTS[2], DOCUMENTS[0], DOCUMENTS[2]])
    assert duplicates[0]["score"] == pytest.approx(duplicates[1]["score"], abs=1e-6)
    assert {duplicates[0]["index"], duplicates[1]["index"]} == {0, 2}
    with pytest.raises(ro.InvalidInputError, match="query"):
        default_model.rerank(["not", "a string"], DOCUMENTS)


# -- cross-encoder rerank -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cross_encoder(labelled_checkpoint):
    # At the default init (std 0.02) <s> barely depends on the other tokens: every pair would score the same.
    directory, hf_model = labelled_checkpoint("roberta", "sequence_classification", ("relevance",), seed=7,
                                              initializer_range=0.5)
    return ro.load(directory), hf_model, transformers.AutoTokenizer.from_pretrained(directory)


def _hf_pair_logits(hf_model, tokenizer, query, documents) -> np.ndarray:
    out = []
    for d in documents:
        with torch.no_grad():
            out.append(float(hf_model(**tokenizer(query, d, return_tensors="pt")).logits[0, 0]))
    return np.array(out)


def test_cross_encoder_scores_are_sigmoid_of_pair_logits(cross_encoder):
    m, hf_model, tokenizer = cross_encoder
    logits = _hf_pair_logits(hf_model, tokenizer, QUERY, DOCUMENTS)
    assert np.ptp(logits) > 0.5  # scores that really rank the documents
    expected = 1.0 / (1.0 + np.exp(-logits))
    hits = m.rerank(QUERY, DOCUMENTS)
    assert [h["index"] for h in hits] == list(np.argsort(-expected, kind="stable"))
    by_index = {h["index"]: h["score"] for h in hits}
    assert [by_index[i] for i in range(len(DOCUMENTS))] == pytest.approx(expected.tolist(), abs=1e-5)
    raw = {h["index"]: h["score"] for h in m.rerank(QUERY, DOCUMENTS, raw_scores=True)}
    assert [raw[i] for i in range(len(DOCUMENTS))] == pytest.approx(logits.tolist(), abs=5e-5)


def test_cross_encoder_reads_query_and_document_together(cross_encoder):
    """The pair is (query, document): swapping which text is the query changes the scores."""
    m, hf_model, tokenizer = cross_encoder
    forward = m.rerank(QUERY, [DOCUMENTS[1]], raw_scores=True)[0]["score"]
    backward = m.rerank(DOCUMENTS[1], [QUERY], raw_scores=True)[0]["score"]
    assert forward != pytest.approx(backward, abs=1e-2)
    assert backward == pytest.approx(_hf_pair_logits(hf_model, tokenizer, DOCUMENTS[1], [QUERY])[0], abs=5e-5)


def test_cross_encoder_long_documents_are_windowed(cross_encoder, novel_words):
    """A document longer than the model: mean of window logits, the query repeated in every window."""
    m, hf_model, _ = cross_encoder
    document = " ".join(novel_words[:500])
    windows = m.runner.windows([(QUERY, document)])
    assert len(windows) > 3
    with torch.no_grad():
        logits = [float(hf_model(input_ids=torch.tensor([w.ids])).logits[0, 0]) for w in windows]
    expected = 1.0 / (1.0 + np.exp(-np.mean(logits)))
    hits = m.rerank(QUERY, [DOCUMENTS[0], document])
    assert {h["index"]: h["score"] for h in hits}[1] == pytest.approx(expected, abs=1e-5)
    truncated = m.rerank(QUERY, [document], truncate=True, raw_scores=True)[0]["score"]
    assert truncated == pytest.approx(logits[0], abs=5e-5)
