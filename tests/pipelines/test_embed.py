"""Embeddings with the default model (all-MiniLM-L6-v2) against sentence-transformers and transformers.

Also the runner underneath: batch planning by token budget, and results back in input order whatever the lengths.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers

import robertaops as ro
from robertaops.model.heads import pool
from robertaops.pipelines import embed as embed_pipeline
from robertaops.pipelines.runner import plan_batches

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "Embeddings map sentences to vectors.",
    "Short.",
    "Überraschung! Ça marche aussi avec des accents — et des émojis 🎉.",
]


@pytest.fixture(scope="module")
def hf_encoder(default_model_dir):
    return transformers.AutoModel.from_pretrained(default_model_dir).eval()


def _hf_pooled(hf_encoder, tokenizer, texts, how):
    """The oracle for pooling: transformers' hidden states, pooled over every non-pad token."""
    out = []
    for t in texts:
        enc = tokenizer(t, return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            hidden = hf_encoder(**enc).last_hidden_state[0]  # (T, H)
        out.append({"cls": hidden[0], "mean": hidden.mean(0), "max": hidden.max(0).values}[how].numpy())
    return np.stack(out)


def test_equals_sentence_transformers(default_model, sentence_transformer):
    ours = default_model.embed(SENTENCES)
    theirs = sentence_transformer.encode(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.linalg.norm(ours, axis=1) == pytest.approx(1.0, abs=1e-5)
    cos = ours @ ours.T
    assert cos[0, 1] < 0.9  # different sentences, different vectors


def test_defaults_are_the_sentence_transformers_config(default_model):
    assert default_model.pooling == "mean"
    assert default_model.max_length == 256
    assert default_model.dimension == 384


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_pooling_without_normalization(default_model, hf_encoder, pooling):
    tokenizer = transformers.AutoTokenizer.from_pretrained(default_model.path)
    ours = default_model.embed(SENTENCES, pooling=pooling, normalize=False)
    expected = _hf_pooled(hf_encoder, tokenizer, SENTENCES, pooling)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert not np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)
    normalized = default_model.embed(SENTENCES, pooling=pooling, normalize=True)
    np.testing.assert_allclose(normalized, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_poolings_differ(default_model):
    cls, mean, mx = (default_model.embed(SENTENCES[0], pooling=p) for p in ("cls", "mean", "max"))
    assert cls @ mean < 0.999 and mean @ mx < 0.999


def test_unknown_pooling(default_model):
    with pytest.raises(ro.InvalidInputError, match="pooling"):
        default_model.embed("x", pooling="median")


def test_single_text_and_empty_inputs(default_model, sentence_transformer):
    one = default_model.embed(SENTENCES[0])
    assert one.shape == (384,)
    np.testing.assert_allclose(one, default_model.embed([SENTENCES[0]])[0], atol=1e-6)
    empty = default_model.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    blank = default_model.embed(["", "   ", "\n\t"])
    assert np.isfinite(blank).all()
    assert np.linalg.norm(blank, axis=1) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(blank, sentence_transformer.encode(["", "   ", "\n\t"]), atol=1e-4)


def test_non_text_input_is_rejected(default_model):
    with pytest.raises(ro.InvalidInputError):
        default_model.embed([3.5])


def test_batched_equals_single(default_model):
    batch = default_model.embed(SENTENCES)
    singles = np.stack([default_model.embed(s) for s in SENTENCES])
    np.testing.assert_allclose(batch, singles, atol=1e-5)


def test_order_preserved_with_wildly_varying_lengths(default_model, novel_words):
    """The runner sorts by length and packs by token budget; results must come back in input order."""
    rng = random.Random(0)
    texts = [" ".join(novel_words[i: i + n]) for i, n in enumerate([1, 180, 3, 60, 2, 120, 9, 1, 30, 150])]
    texts += [texts[1]]  # a duplicate gets the same vector
    rng.shuffle(texts)
    small_budget = ro.load(default_model.path, max_batch_tokens=300)  # many batches of mixed sizes
    batch = small_budget.embed(texts)
    singles = np.stack([default_model.embed(t) for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert np.unique(np.round(batch, 4), axis=0).shape[0] == len(set(texts))


def test_lean_id_path_equals_the_windows_path(default_model, novel_words):
    """Single texts take Runner.forward_ids (vectorised collation, no mask on unpadded batches); it must give what
    the general window path gives, with short, equal-length (unpadded) and long inputs mixed in one call."""
    m = ro.load(default_model.path, max_batch_tokens=400)
    texts = ["same length text here", "same length text here", " ".join(novel_words[:600]), "Short.",
             " ".join(novel_words[5:90]), "same length text here"]
    windows = m.runner.windows(texts)
    rows = m.runner.run(windows, lambda hidden, batch: list(
        pool(hidden, batch.attention_mask, "mean").float().numpy()))
    expected = np.zeros((len(texts), m.dimension))
    weight = np.zeros(len(texts))
    for w, r in zip(windows, rows, strict=True):
        expected[w.item] += len(w) * r
        weight[w.item] += len(w)
    expected /= weight[:, None]
    np.testing.assert_allclose(m.embed(texts, pooling="mean", normalize=False), expected, atol=1e-5)
    assert len(windows) > len(texts)  # the long text really was windowed


def test_chunked_tokenization_keeps_inputs_in_place(default_model, novel_words, monkeypatch):
    """On a GPU, large calls are tokenized chunk by chunk ahead of the device; forced small chunks on the CPU must
    give the same rows in the same order, long (windowed) inputs included."""
    texts = [" ".join(novel_words[i: i + n]) for i, n in enumerate([4, 700, 12, 1, 33, 9, 300, 2, 18, 5])]
    whole = default_model.embed(texts)
    monkeypatch.setattr(embed_pipeline, "_chunks", lambda runner, texts: [(0, 3), (3, 6), (6, 9), (9, 10)])
    np.testing.assert_allclose(default_model.embed(texts), whole, atol=1e-6)


def test_gpu_chunks_are_sized_in_characters(monkeypatch):
    monkeypatch.setattr(embed_pipeline, "GPU_TOKENIZE_CHARS", 10)
    gpu, cpu = SimpleNamespace(device=torch.device("cuda")), SimpleNamespace(device=torch.device("cpu"))
    texts = ["a" * 4, "b" * 4, "c" * 4, "d" * 30, "e", "f"]
    assert embed_pipeline._chunks(gpu, texts) == [(0, 3), (3, 4), (4, 6)]
    assert embed_pipeline._chunks(cpu, texts) == [(0, 6)]


# -- long inputs ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_text(novel_words):
    return " ".join(novel_words[:2000])


def test_long_input_is_the_token_weighted_mean_of_its_windows(default_model, hf_encoder, long_text):
    m = default_model
    windows = m.runner.windows([long_text])
    assert len(windows) > 5 and all(len(w) <= m.max_length for w in windows)
    assert windows[1].first < windows[0].content  # overlapping
    pooled, weights = [], []
    with torch.no_grad():
        for w in windows:
            hidden = hf_encoder(input_ids=torch.tensor([w.ids])).last_hidden_state[0]  # (T, H)
            pooled.append(hidden.mean(0).numpy())
            weights.append(len(w))
    expected = np.average(np.stack(pooled), axis=0, weights=weights)
    np.testing.assert_allclose(m.embed(long_text, normalize=False), expected, atol=1e-4)
    ours = m.embed(long_text)
    np.testing.assert_allclose(ours, expected / np.linalg.norm(expected), atol=1e-5)


def test_long_input_max_pooling_is_the_max_over_windows(default_model, hf_encoder, long_text):
    windows = default_model.runner.windows([long_text])
    with torch.no_grad():
        maxima = [hf_encoder(input_ids=torch.tensor([w.ids])).last_hidden_state[0].max(0).values.numpy()
                  for w in windows]
    ours = default_model.embed(long_text, pooling="max", normalize=False)
    np.testing.assert_allclose(ours, np.max(maxima, axis=0), atol=1e-4)


def test_truncate_equals_sentence_transformers(default_model, sentence_transformer, long_text):
    truncated = default_model.embed(long_text, truncate=True)
    np.testing.assert_allclose(truncated, sentence_transformer.encode(long_text), atol=1e-4)
    whole = default_model.embed(long_text)
    assert float(truncated @ whole) < 0.999  # the rest of the text counted
    first_window = default_model.runner.windows([long_text])[0]
    prefix = long_text[: first_window.offsets[-2][1]]
    np.testing.assert_allclose(truncated, default_model.embed(prefix), atol=1e-5)


def test_stride_changes_the_windows(default_model, long_text):
    m = default_model
    text = " ".join(long_text.split(" ")[:600])
    assert len(m.runner.windows([text], stride=0)) < len(m.runner.windows([text], stride=128))
    a, b = m.embed(text, stride=0), m.embed(text, stride=128)
    assert float(a @ b) > 0.95 and not np.allclose(a, b, atol=1e-4)
    with pytest.raises(ro.InvalidInputError, match="stride"):
        m.embed(text, stride=-1)


# -- batch planning -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_plan_batches_respects_the_budget(seed):
    rng = random.Random(seed)
    lengths = [rng.choice([1, 2, 5, 17, 64, 128, 256, 512, 700]) for _ in range(rng.randint(1, 300))]
    budget = rng.choice([256, 600, 2048, 16384])
    groups = plan_batches(lengths, budget)
    flat = [i for g in groups for i in g]
    assert sorted(flat) == list(range(len(lengths)))  # every index exactly once
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert len(g) == 1 or len(g) * longest <= budget
        assert lengths[g[0]] == longest
    firsts = [lengths[g[0]] for g in groups]
    assert firsts == sorted(firsts, reverse=True)  # longest first: memory trouble shows on the first batch
    capped = plan_batches(lengths, budget, max_batch_size=3)
    assert max(len(g) for g in capped) <= 3
    assert sorted(i for g in capped for i in g) == list(range(len(lengths)))


def test_plan_batches_packs_similar_lengths():
    groups = plan_batches([10, 500, 10, 10, 500, 10], 1000)
    assert groups == [[1, 4], [0, 2, 3, 5]]
    assert plan_batches([], 100) == []
    assert plan_batches([900], 100) == [[0]]  # too long for the budget alone: still runs, on its own


def test_embed_all_equals_transformers_hidden_states(default_model_dir, hf_encoder):
    m = ro.load(default_model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(default_model_dir)
    got = m.embed_all(SENTENCES)
    for text, states in zip(SENTENCES, got, strict=True):
        with torch.no_grad():
            expected = hf_encoder(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()  # (T, H)
        assert states.shape == expected.shape
        np.testing.assert_allclose(states, expected, atol=1e-4)


def test_embed_all_long_input_merges_windows_by_position(default_model_dir, hf_encoder):
    m = ro.load(default_model_dir, max_length=16)
    text = " ".join(["token"] * 10 + ["river", "bank", "money"] * 8)
    full = m.tokenize([text])[0]
    states = m.embed_all(text, stride=4)
    assert states.shape == (len(full), m.dimension)  # one row per token of the whole text, specials included
    first = torch.tensor([full[:15] + [full[-1]]])  # the first window: <s> + 14 content tokens + </s>
    with torch.no_grad():
        window = hf_encoder(input_ids=first).last_hidden_state[0].numpy()
    # Content tokens only the first window sees (before the overlap with the second) are exactly its states.
    np.testing.assert_allclose(states[1:11], window[1:11], atol=1e-4)
    truncated = m.embed_all(text, truncate=True)
    assert truncated.shape == (16, m.dimension)
    np.testing.assert_allclose(truncated, window, atol=1e-4)
