"""NER: `m.ner` equals transformers' token-classification pipeline, and long inputs are windowed correctly.

Tiny random token-classification checkpoints (RoBERTa byte-level BPE, BERT WordPiece) with BIO labels; random
weights spread predictions over every label, so real entities (and real "O" tokens to drop) appear.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import transformers

import robertaops as ro

NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
AGGREGATIONS = ["none", "simple", "first", "average", "max"]
SENTENCES = [
    "John Smith lives in New York City and works for Microsoft in Seattle.",
    "Angela Merkel visited Paris, unbelievably, on Tuesday.",
    "The Wolkenkratzerbauer from Kraków met Ms. O'Neill-Żółć at 10:30.",
    "I ❤ 🦄 pizza in Zürich ☃ and Ω≈ç√ okay",  # WordPiece [UNK]s: HF reports the original characters
    "Hello",
    "",
]


@pytest.fixture(scope="module", params=[("roberta", 0), ("bert", 1)], ids=["roberta", "bert"])
def ner_pair(request, labelled_checkpoint):
    """(our model, transformers model, transformers tokenizer)."""
    model_type, seed = request.param
    directory, hf_model = labelled_checkpoint(model_type, "token_classification", NER_LABELS, seed=seed)
    return ro.load(directory), hf_model, transformers.AutoTokenizer.from_pretrained(directory)


def _hf_ner(hf_model, tokenizer, texts, aggregation, **kwargs):
    pipe = transformers.pipeline("token-classification", model=hf_model, tokenizer=tokenizer,
                                 aggregation_strategy=aggregation, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Tokenizer does not support real words" for byte-level BPE
        return [pipe(t) for t in texts]


def _assert_same_entities(ours, theirs, key):
    assert [(e[key], e["start"], e["end"], e["word"]) for e in ours] == [
        (e[key], e["start"], e["end"], e["word"]) for e in theirs
    ]
    for a, b in zip(ours, theirs, strict=True):
        assert a["score"] == pytest.approx(float(b["score"]), abs=1e-4)
        if key == "entity":
            assert a["index"] == b["index"]


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_ner_equals_transformers_pipeline(ner_pair, aggregation):
    m, hf_model, tokenizer = ner_pair
    ours = m.ner(SENTENCES, aggregation=aggregation)
    theirs = _hf_ner(hf_model, tokenizer, SENTENCES, aggregation)
    key = "entity" if aggregation == "none" else "entity_group"
    assert len(ours) == len(SENTENCES)
    for o, t in zip(ours, theirs, strict=True):
        _assert_same_entities(o, t, key)
    assert sum(len(o) for o in ours) >= 5, "the test would be vacuous without entities"
    found = {e[key].split("-")[-1] for o in ours for e in o}
    assert found == {"PER", "LOC"}
    assert "O" not in found  # "O" is dropped, as HF's default ignore_labels=["O"] does


def test_o_tokens_exist_and_are_dropped(ner_pair):
    """Without "O" predictions the ignore-labels check above would prove nothing."""
    m, hf_model, tokenizer = ner_pair
    everything = _hf_ner(hf_model, tokenizer, SENTENCES, "none", ignore_labels=[])
    kept = m.ner(SENTENCES, aggregation="none")
    assert sum(len(e) for e in everything) > sum(len(k) for k in kept)
    assert any(e["entity"] == "O" for row in everything for e in row)


def test_single_text_gives_single_result_and_batch_matches(ner_pair):
    m, _, _ = ner_pair
    batch = m.ner(SENTENCES[:3])
    for text, expected in zip(SENTENCES[:3], batch, strict=True):
        _assert_same_entities(m.ner(text), expected, "entity_group")  # padding in a batch changes nothing


def test_ner_errors(ner_pair, default_model):
    m, _, _ = ner_pair
    with pytest.raises(ro.InvalidInputError, match="aggregation"):
        m.ner(["x"], aggregation="longest")
    with pytest.raises(ro.InvalidInputError):
        m.ner([("a", "b")])  # NER takes plain texts, not pairs
    with pytest.raises(ro.UnsupportedTaskError):
        default_model.ner(["John lives in Paris"])
    assert m.ner([]) == []


# -- long inputs (RoBERTa only: max_length 128, so 2,000 words is ~20 windows) ----------------------------------
@pytest.fixture(scope="module")
def roberta_ner(labelled_checkpoint):
    directory, _ = labelled_checkpoint("roberta", "token_classification", NER_LABELS, seed=0)
    return ro.load(directory)


@pytest.fixture(scope="module")
def long_text(novel_words):
    return " ".join(novel_words[:2000])


@pytest.mark.parametrize("aggregation", ["none", "simple", "first"])
def test_long_input_offsets_index_the_original_text(roberta_ner, long_text, aggregation):
    m = roberta_ner
    n_tokens = len(m.tokenize(long_text))
    assert n_tokens > 10 * m.max_length
    entities = m.ner(long_text, aggregation=aggregation)
    assert len(entities) > 100
    assert entities[-1]["end"] > len(long_text) * 0.95  # the tail was classified, not cut off
    previous_end = 0
    for e in entities:
        assert 0 <= e["start"] < e["end"] <= len(long_text)
        assert e["start"] >= previous_end, "entities overlap or repeat across window overlaps"
        previous_end = e["end"]
        # "none" reports the raw BPE token ("ĠVA"), like HF; grouped entities report decoded text (" VA").
        word = m.tokenizer.tokens_to_string([e["word"]]) if aggregation == "none" else e["word"]
        assert word.lstrip() == long_text[e["start"]:e["end"]]


def test_long_input_each_token_reported_once(roberta_ner, long_text):
    m = roberta_ner
    tokens = m.ner(long_text, aggregation="none")
    indices = [e["index"] for e in tokens]
    assert indices == sorted(set(indices))
    assert max(indices) >= len(m.tokenize(long_text)) - 20  # indices are positions in the full input


def test_long_input_prefix_matches_short_text(roberta_ner, long_text):
    """Tokens only the first window sees get exactly the logits of the first window's text on its own."""
    m = roberta_ner
    windows = m.runner.windows([long_text])
    first, second = windows[0], windows[1]
    assert second.first < first.content  # the windows overlap
    prefix = long_text[: first.offsets[-2][1]]  # the first window's text: up to its last content token
    assert m.tokenize(prefix) == first.ids
    alone = m.ner(prefix, aggregation="none")
    inside = m.ner(long_text, aggregation="none")
    boundary = second.first + 1  # full-input index of the first token the second window also sees
    alone = [e for e in alone if e["index"] < boundary]
    inside = [e for e in inside if e["index"] < boundary]
    assert len(alone) > 10
    _assert_same_entities(inside, alone, "entity")
    assert [e["score"] for e in inside] == pytest.approx([e["score"] for e in alone], abs=1e-5)
    # Grouped: entities that end well before the overlap are the same too.
    cut = first.offsets[second.first - 5][0]
    grouped_alone = [e for e in m.ner(prefix) if e["end"] < cut]
    grouped_inside = [e for e in m.ner(long_text) if e["end"] < cut]
    assert grouped_alone
    _assert_same_entities(grouped_inside, grouped_alone, "entity_group")


def test_overlap_tokens_average_window_logits(labelled_checkpoint, roberta_ner, long_text):
    """A token seen by two windows gets the softmax of the mean of their logits (from transformers here)."""
    m = roberta_ner
    _, hf_model = labelled_checkpoint("roberta", "token_classification", NER_LABELS, seed=0)
    first, second = m.runner.windows([long_text], stride=48)[:2]
    with torch.no_grad():
        logits = [hf_model(input_ids=torch.tensor([w.ids])).logits[0].numpy() for w in (first, second)]
    ours = {e["index"]: e for e in m.ner(long_text, aggregation="none", stride=48)}
    checked = 0
    for index in range(second.first + 1, first.content + 1):  # full-input indices both windows hold
        mean = (logits[0][index - first.first] + logits[1][index - second.first]) / 2
        probs = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
        label = NER_LABELS[int(probs.argmax())]
        if label == "O":
            assert index not in ours
            continue
        assert ours[index]["entity"] == label
        assert ours[index]["score"] == pytest.approx(float(probs.max()), abs=1e-5)
        checked += 1
    assert checked > 10
    no_overlap = {e["index"]: e for e in m.ner(long_text, aggregation="none", stride=0)}
    assert any(no_overlap[i]["score"] != pytest.approx(ours[i]["score"], abs=1e-5)
               for i in range(second.first + 1, first.content + 1) if i in ours and i in no_overlap)


def test_truncate_keeps_only_the_first_window(roberta_ner, long_text):
    m = roberta_ner
    entities = m.ner(long_text, aggregation="none", truncate=True)
    assert entities
    assert max(e["index"] for e in entities) <= m.max_length - 2
