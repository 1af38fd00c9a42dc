"""Sequence classification against transformers' logits: activations, pairs, batches, top_k, long inputs.

Tiny random RoBERTa (max_length 128, so long inputs are cheap) and BERT (token type ids for pairs) checkpoints,
initialised with std 0.3 instead of 0.02: at the default init the first token's state barely depends on the text,
so every input would get the same near-uniform probabilities and the comparisons would prove little.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import robertaops as ro

LABELS = ("negative", "neutral", "positive")
TEXTS = [
    "A wonderful, moving film.",
    "Terrible.",
    "The plot meanders for two hours before arriving, at last, somewhere nobody wanted to go.",
    "",
]
PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("The cat sleeps.", "A dog barks loudly at the postman every single morning."),
]


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _hf_logits(hf_model, tokenizer, texts, **kwargs) -> np.ndarray:
    """Each input on its own (no padding), so the oracle is independent of batching."""
    rows = []
    for t in texts:
        args = t if isinstance(t, tuple) else (t,)
        enc = tokenizer(*args, return_tensors="pt", **kwargs)
        with torch.no_grad():
            rows.append(hf_model(**enc).logits[0].numpy())
    return np.stack(rows)


@pytest.fixture(scope="module", params=["roberta", "bert"])
def classifier(request, labelled_checkpoint):
    directory, hf_model = labelled_checkpoint(request.param, "sequence_classification", LABELS, seed=3,
                                                  initializer_range=0.3)
    return ro.load(directory), hf_model, transformers.AutoTokenizer.from_pretrained(directory)


def _scores(result) -> dict[str, float]:
    return {r["label"]: r["score"] for r in result}


@pytest.mark.parametrize("inputs", [TEXTS, PAIRS, TEXTS[:2] + PAIRS], ids=["texts", "pairs", "mixed"])
def test_probabilities_equal_softmax_of_hf_logits(classifier, inputs):
    m, hf_model, tokenizer = classifier
    expected = _softmax(_hf_logits(hf_model, tokenizer, inputs))
    ours = m.classify(inputs, top_k=None)
    assert len(ours) == len(inputs)
    for row, probs in zip(ours, expected, strict=True):
        assert [r["label"] for r in row] == [LABELS[j] for j in np.argsort(-probs, kind="stable")]
        got = _scores(row)
        assert [got[label] for label in LABELS] == pytest.approx(probs.tolist(), abs=1e-5)
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
    assert len({tuple(np.round(p, 3)) for p in expected}) == len(inputs)  # inputs really differ


def test_pair_order_and_type_ids_matter(classifier):
    m, hf_model, tokenizer = classifier
    a, b = PAIRS[0]
    forward, backward = m.classify([(a, b), (b, a)], top_k=None)
    assert _scores(forward) != pytest.approx(_scores(backward), abs=1e-3)
    expected = _softmax(_hf_logits(hf_model, tokenizer, [(b, a)]))[0]
    assert [_scores(backward)[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)


def test_single_input_and_top_k(classifier):
    m, _, _ = classifier
    everything = m.classify(TEXTS[2], top_k=None)
    assert isinstance(everything, list) and isinstance(everything[0], dict)
    assert len(everything) == len(LABELS)
    scores = [r["score"] for r in everything]
    assert scores == sorted(scores, reverse=True)
    assert m.classify(TEXTS[2]) == everything[:1]  # top_k=1 is the default
    assert m.classify(TEXTS[2], top_k=2) == everything[:2]
    assert m.classify(TEXTS[2], top_k=10) == everything
    with pytest.raises(ro.InvalidInputError, match="top_k"):
        m.classify(TEXTS[2], top_k=0)


def test_single_pair_is_one_input(classifier):
    m, _, _ = classifier
    single = m.classify(PAIRS[1], top_k=None)
    assert single == m.classify([PAIRS[1]], top_k=None)[0]
    assert isinstance(single[0], dict)


def test_batch_equals_single(classifier):
    m, _, _ = classifier
    inputs = TEXTS + PAIRS
    batch = m.classify(inputs, top_k=None, raw_scores=True)
    for item, row in zip(inputs, batch, strict=True):
        alone = _scores(m.classify([item], top_k=None, raw_scores=True)[0])
        assert [alone[label] for label in LABELS] == pytest.approx([_scores(row)[label] for label in LABELS],
                                                                   abs=1e-5)


def test_raw_scores_are_logits(classifier):
    m, hf_model, tokenizer = classifier
    expected = _hf_logits(hf_model, tokenizer, TEXTS)
    for row, logits in zip(m.classify(TEXTS, top_k=None, raw_scores=True), expected, strict=True):
        assert [_scores(row)[label] for label in LABELS] == pytest.approx(logits.tolist(), abs=1e-5)
        assert [r["label"] for r in row] == [LABELS[j] for j in np.argsort(-logits, kind="stable")]


def test_multi_label_uses_sigmoid(labelled_checkpoint):
    directory, hf_model = labelled_checkpoint("roberta", "sequence_classification", ("toxic", "spam", "rude", "ok"),
                                              seed=4, initializer_range=0.3,
                                              problem_type="multi_label_classification")
    m = ro.load(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    expected = 1.0 / (1.0 + np.exp(-_hf_logits(hf_model, tokenizer, TEXTS)))
    for row, probs in zip(m.classify(TEXTS, top_k=None), expected, strict=True):
        assert [_scores(row)[label] for label in ("toxic", "spam", "rude", "ok")] == pytest.approx(
            probs.tolist(), abs=1e-5)
    assert any(abs(sum(_scores(row).values()) - 1) > 0.05 for row in m.classify(TEXTS, top_k=None))


def test_regression_returns_raw_value(make_checkpoint):
    directory, hf_model = make_checkpoint("roberta", "sequence_classification", seed=5, num_labels=1,
                                          initializer_range=0.3)
    m = ro.load(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    expected = _hf_logits(hf_model, tokenizer, TEXTS)[:, 0]
    assert np.ptp(expected) > 0.1
    ours = m.classify(TEXTS)
    assert [len(r) for r in ours] == [1] * len(TEXTS)
    assert [r[0]["score"] for r in ours] == pytest.approx(expected.tolist(), abs=1e-5)
    assert ours[0][0]["label"] == "LABEL_0"


def test_classify_needs_a_classification_head(make_checkpoint, default_model):
    with pytest.raises(ro.UnsupportedTaskError, match="sequence_classification"):
        default_model.classify("hello")
    directory, _ = make_checkpoint("roberta", "token_classification")
    with pytest.raises(ro.UnsupportedTaskError):
        ro.load(directory).classify("hello")


def test_empty_list(classifier):
    m, _, _ = classifier
    assert m.classify([]) == []


# -- long inputs (RoBERTa: 128 tokens a window) ---------------------------------------------------------------
@pytest.fixture(scope="module")
def roberta_classifier(labelled_checkpoint):
    directory, hf_model = labelled_checkpoint("roberta", "sequence_classification", LABELS, seed=3,
                                                  initializer_range=0.3)
    return ro.load(directory), hf_model, transformers.AutoTokenizer.from_pretrained(directory)


def _window_logits(hf_model, windows) -> np.ndarray:
    with torch.no_grad():
        return np.stack([hf_model(input_ids=torch.tensor([w.ids])).logits[0].numpy() for w in windows])


def test_long_input_averages_window_logits(roberta_classifier, novel_words):
    m, hf_model, _ = roberta_classifier
    text = " ".join(novel_words[:1000])
    windows = m.runner.windows([text])
    assert len(windows) > 5
    assert windows[0].ids[0] == 0 and windows[-1].ids[-1] == 2  # each window is a full <s> ... </s> input
    expected_logits = _window_logits(hf_model, windows).mean(0)
    ours = _scores(m.classify(text, top_k=None))
    assert [ours[label] for label in LABELS] == pytest.approx(_softmax(expected_logits).tolist(), abs=1e-5)
    raw = _scores(m.classify(text, top_k=None, raw_scores=True))
    assert [raw[label] for label in LABELS] == pytest.approx(expected_logits.tolist(), abs=1e-5)


def test_long_pair_keeps_the_first_text_in_every_window(roberta_classifier, novel_words):
    m, hf_model, _ = roberta_classifier
    question = "Who is the narrator?"
    pair = (question, " ".join(novel_words[:400]))
    windows = m.runner.windows([pair])
    assert len(windows) > 2
    head = m.tokenize(question)[:-1]  # <s> question
    assert all(w.ids[: len(head)] == head for w in windows)
    expected = _softmax(_window_logits(hf_model, windows).mean(0))
    ours = _scores(m.classify(pair, top_k=None))
    assert [ours[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)


def test_truncate_equals_hf_truncation(roberta_classifier, novel_words):
    m, hf_model, tokenizer = roberta_classifier
    text = " ".join(novel_words[:1000])
    expected = _softmax(_hf_logits(hf_model, tokenizer, [text], truncation=True, max_length=m.max_length))[0]
    ours = _scores(m.classify(text, top_k=None, truncate=True))
    assert [ours[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)
    assert ours != pytest.approx(_scores(m.classify(text, top_k=None)), abs=1e-4)
    pair = ("Who is the narrator?", text)
    expected = _softmax(_hf_logits(hf_model, tokenizer, [pair], truncation="only_second",
                                   max_length=m.max_length))[0]
    ours = _scores(m.classify(pair, top_k=None, truncate=True))
    assert [ours[label] for label in LABELS] == pytest.approx(expected.tolist(), abs=1e-5)


def test_pair_whose_first_text_fills_the_window_is_an_error(roberta_classifier, novel_words):
    m, _, _ = roberta_classifier
    with pytest.raises(ro.InvalidInputError, match="no room"):
        m.classify((" ".join(novel_words[:200]), "short"))
