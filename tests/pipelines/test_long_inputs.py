"""A 10,000-word text (~12,500 tokens) through every task: nothing truncated, nothing warned, everything finite.

Each model's limit is far below the text (MiniLM 256 tokens, tiny RoBERTa 128, novels-small 512), so every task
has to window it. "Not truncated" is proven by comparing against `truncate=True`, which keeps the first window.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import transformers

import robertaops as ro


@pytest.fixture(scope="module")
def huge_text(novel_words) -> str:
    text = " ".join(novel_words[:10_000])
    assert len(text.split()) == 10_000
    return text


@pytest.fixture(autouse=True)
def no_truncation_warnings(caplog):
    """Fail a test whose pipeline warns or logs about truncating or over-long input (the oracles may: their
    tokenizers warn past 512 tokens)."""
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    messages = [str(w.message) for w in caught if "transformers" not in w.filename]
    messages += [r.getMessage() for r in caplog.records if not r.name.startswith("transformers")]
    bad = [m for m in messages if any(k in m.lower() for k in ("truncat", "longer than", "too long", "exceed"))]
    assert not bad, bad


@pytest.fixture(scope="module")
def tiny_roberta(make_checkpoint):
    """Tiny RoBERTa checkpoints by task, 128 tokens a window."""
    def load(task, **overrides):
        directory, _ = make_checkpoint("roberta", task, seed=11, **overrides)
        return ro.load(directory)
    return load


def test_tokenize_keeps_every_token(default_model, huge_text):
    ids = default_model.tokenize(huge_text)
    expected = transformers.AutoTokenizer.from_pretrained(default_model.path)(huge_text)["input_ids"]
    assert ids == expected
    assert len(ids) > 40 * default_model.max_length
    assert default_model.decode(ids) == default_model.decode(expected)


def test_embed(default_model, huge_text):
    whole = default_model.embed(huge_text)
    first_window = default_model.embed(huge_text, truncate=True)
    assert whole.shape == (384,) and np.isfinite(whole).all()
    assert np.linalg.norm(whole) == pytest.approx(1.0, abs=1e-5)
    assert float(whole @ first_window) < 0.99  # the other ~12,000 tokens changed the vector
    # The second half of the text alone is nearer the whole than the first window is: all of it counted.
    tail = default_model.embed(" ".join(huge_text.split(" ")[-1000:]))
    assert float(whole @ tail) > float(first_window @ tail)


def test_classify(tiny_roberta, huge_text):
    m = tiny_roberta("sequence_classification", num_labels=3, initializer_range=0.3)
    whole = m.classify(huge_text, top_k=None, raw_scores=True)
    truncated = m.classify(huge_text, top_k=None, raw_scores=True, truncate=True)
    assert np.isfinite([r["score"] for r in whole]).all()
    assert {r["label"]: r["score"] for r in whole} != pytest.approx(
        {r["label"]: r["score"] for r in truncated}, abs=1e-4)
    probs = m.classify(huge_text, top_k=None)
    assert sum(r["score"] for r in probs) == pytest.approx(1.0, abs=1e-5)


def test_ner(tiny_roberta, huge_text):
    m = tiny_roberta("token_classification", num_labels=5)
    entities = m.ner(huge_text)
    assert len(entities) > 1000
    assert entities[-1]["end"] > 0.99 * len(huge_text)  # found near the very end of the text
    assert all(np.isfinite(e["score"]) and 0 < e["score"] <= 1 for e in entities)
    starts = [e["start"] for e in entities]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    truncated = m.ner(huge_text, truncate=True)
    assert truncated[-1]["end"] < 0.05 * len(huge_text)


def test_fill_mask(novels_model, huge_text):
    words = huge_text.split(" ")
    middle = len(words) // 2
    text = " ".join(words[:middle] + ["<mask>"] + words[middle:])
    candidates = novels_model.fill_mask(text)
    assert len(candidates) == 5
    assert all(np.isfinite(c["score"]) and 0 < c["score"] < 1 for c in candidates)
    for c in candidates:
        assert c["sequence"] == text.replace(" <mask>", c["token_str"])
    with pytest.raises(ro.InvalidInputError, match="beyond"):
        novels_model.fill_mask(text, truncate=True)  # the mask is ~6,000 tokens past the first window


def test_rerank_cross_encoder(tiny_roberta, huge_text):
    m = tiny_roberta("sequence_classification", num_labels=1, initializer_range=0.5)
    query = "What happened on her tenth birthday?"
    hits = m.rerank(query, ["A short unrelated note.", huge_text], raw_scores=True)
    assert sorted(h["index"] for h in hits) == [0, 1]
    scores = {h["index"]: h["score"] for h in hits}
    assert np.isfinite(list(scores.values())).all()
    truncated = m.rerank(query, [huge_text], raw_scores=True, truncate=True)[0]["score"]
    assert scores[1] != pytest.approx(truncated, abs=1e-4)


def test_rerank_bi_encoder_and_similarity(tiny_roberta, huge_text):
    m = tiny_roberta("base")
    short = "A short unrelated note."
    sim = m.similarity([huge_text, short], [huge_text, huge_text[: len(huge_text) // 2]])
    assert sim.shape == (2, 2) and np.isfinite(sim).all()
    assert sim[0, 0] == pytest.approx(1.0, abs=1e-5)
    truncated = m.similarity([huge_text], [huge_text], truncate=True)
    assert truncated[0, 0] == pytest.approx(1.0, abs=1e-5)
    hits = m.rerank(huge_text, [short, huge_text])
    assert hits[0]["index"] == 1 and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    whole = m.embed(huge_text)
    assert not np.allclose(whole, m.embed(huge_text, truncate=True), atol=1e-4)
