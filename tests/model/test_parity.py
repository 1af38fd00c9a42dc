"""Numerical parity with Hugging Face transformers (the oracle) for every supported family and head.

Tiny random checkpoints (tests/conftest.py `make_checkpoint`) are loaded with `ro.load` and compared with the
transformers model that wrote them: last hidden states, pooled embeddings, classification scores, token logits and
MLM logits, each on one input, a padded batch of uneven lengths (non-pad positions only) and text pairs. Then the
real checkpoints: roberta-novels-small against RobertaForMaskedLM, and the default model against
sentence-transformers. Tolerance: max |diff| < 1e-4 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robertaops as ro

FAMILIES = ["roberta", "bert", "xlm-roberta", "camembert"]
TASKS = ["base", "mlm", "sequence_classification", "token_classification"]
ATOL = 1e-4

SINGLE = ["The quick brown fox jumps over the lazy dog near the river bank."]
BATCH = [
    "Short.",
    "A considerably longer sentence, with punctuation; numbers like 1,234 and names like Zürich!",
    "",
    "Three words here",
    "   leading and trailing spaces   ",
]
PAIRS = [
    ("Is this a question?", "Yes, it is a question, and this is a longer answer to it."),
    ("Short first.", "Short second."),
    ("A much longer first segment that keeps going for a while before it stops.", "Tiny."),
]
INPUTS = {"single": SINGLE, "batch": BATCH, "pairs": PAIRS}


@pytest.fixture(scope="module")
def loaded(make_checkpoint):
    """(model_type, task, **config) -> (our Model, transformers model, checkpoint dir); cached per module."""
    cache: dict = {}

    def get(model_type: str, task: str, **overrides):
        key = (model_type, task, tuple(sorted(overrides.items())))
        if key not in cache:
            directory, hf = make_checkpoint(model_type, task, **overrides)
            cache[key] = (ro.load(directory), hf, directory)
        return cache[key]

    return get


def padded(m: ro.Model, texts: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Our tokenizer's ids, right-padded by hand: (ids, mask, type_ids), each (B, T)."""
    encs = m.tokenizer.encode(texts)
    width = max(len(e.ids) for e in encs)
    ids = torch.full((len(encs), width), m.config.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for row, e in enumerate(encs):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        mask[row, : len(e.ids)] = 1
        types[row, : len(e.ids)] = torch.tensor(e.type_ids)
    return ids, mask, types


def forward_both(m: ro.Model, hf, texts: list):
    """Our last hidden states and HF's (plus HF's full output) on the same padded ids."""
    ids, mask, types = padded(m, texts)
    ours_types = types if m.config.type_vocab_size > 1 else None  # what the Runner passes
    hf_types = types if m.config.family == "bert" else None  # RoBERTa's tokenizer sets type ids RoBERTa ignores
    with torch.inference_mode():
        ours = m.runner.model(ids, mask, ours_types)  # (B, T, H)
        out = hf(input_ids=ids, attention_mask=mask, token_type_ids=hf_types, output_hidden_states=True)
    return ours, out.hidden_states[-1], out, mask


def max_diff_on_tokens(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    keep = mask.bool()  # (B, T)
    return float((a[keep] - b[keep]).abs().max())


# -- tiny random checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model_type", FAMILIES)
@pytest.mark.parametrize("inputs", list(INPUTS))
def test_last_hidden_states_match(loaded, model_type, task, inputs):
    m, hf, _ = loaded(model_type, task)
    ours, theirs, _, mask = forward_both(m, hf, INPUTS[inputs])
    assert ours.shape == theirs.shape
    assert max_diff_on_tokens(ours, theirs, mask) < ATOL


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
@pytest.mark.parametrize("model_type", FAMILIES)
def test_pooled_embeddings_match(loaded, model_type, pooling):
    m, hf, _ = loaded(model_type, "base")
    texts = BATCH + PAIRS
    _, theirs, _, mask = forward_both(m, hf, texts)
    keep = mask.unsqueeze(-1).bool()  # (B, T, 1)
    if pooling == "cls":
        expected = theirs[:, 0]
    elif pooling == "mean":
        expected = (theirs * keep).sum(1) / keep.sum(1)
    else:
        expected = theirs.masked_fill(~keep, float("-inf")).max(1).values
    got = m.embed(texts, pooling=pooling, normalize=False)
    assert got.shape == (len(texts), m.dimension)
    np.testing.assert_allclose(got, expected.numpy(), atol=ATOL, rtol=0)


def scores_in_label_order(m: ro.Model, results: list[list[dict]]) -> np.ndarray:
    return np.array([[{r["label"]: r["score"] for r in row}[label] for label in m.config.id2label] for row in results])


@pytest.mark.parametrize("model_type", FAMILIES)
@pytest.mark.parametrize("inputs", list(INPUTS))
def test_single_label_probabilities_match_softmax(loaded, model_type, inputs):
    m, hf, _ = loaded(model_type, "sequence_classification")
    _, _, out, _ = forward_both(m, hf, INPUTS[inputs])
    got = scores_in_label_order(m, m.classify(INPUTS[inputs], top_k=None))
    np.testing.assert_allclose(got, out.logits.softmax(-1).numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_multi_label_probabilities_match_sigmoid(loaded, model_type):
    m, hf, _ = loaded(model_type, "sequence_classification", problem_type="multi_label_classification")
    assert m.config.resolved_problem_type == "multi_label_classification"
    texts = BATCH + PAIRS
    _, _, out, _ = forward_both(m, hf, texts)
    got = scores_in_label_order(m, m.classify(texts, top_k=None))
    np.testing.assert_allclose(got, out.logits.sigmoid().numpy(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_regression_score_is_raw_logit(loaded, model_type):
    m, hf, _ = loaded(model_type, "sequence_classification", num_labels=1)
    texts = BATCH + PAIRS
    _, _, out, _ = forward_both(m, hf, texts)
    results = m.classify(texts, top_k=None)
    assert all(len(row) == 1 for row in results)
    got = np.array([row[0]["score"] for row in results])
    np.testing.assert_allclose(got, out.logits[:, 0].numpy(), atol=ATOL, rtol=0)


# Per-token heads: our head applied to our hidden states vs the transformers model's logits.
TOKEN_HEADS = {
    "token_classification": lambda model, hidden: model.token_logits(hidden),  # (B, T, L)
    "mlm": lambda model, hidden: model.mlm(hidden),  # (B, T, V)
}


@pytest.mark.parametrize("model_type", FAMILIES)
@pytest.mark.parametrize("inputs", list(INPUTS))
@pytest.mark.parametrize("task", list(TOKEN_HEADS))
def test_token_level_logits_match(loaded, model_type, inputs, task):
    m, hf, _ = loaded(model_type, task)
    ours, _, out, mask = forward_both(m, hf, INPUTS[inputs])
    with torch.inference_mode():
        logits = TOKEN_HEADS[task](m.runner.model, ours)
    assert logits.shape == out.logits.shape
    assert max_diff_on_tokens(logits, out.logits, mask) < ATOL


@pytest.mark.parametrize("model_type", ["roberta", "bert"])
def test_pair_ids_and_type_ids_agree_with_transformers_tokenizer(loaded, model_type):
    from transformers import AutoTokenizer

    m, hf, directory = loaded(model_type, "base")
    hf_tok = AutoTokenizer.from_pretrained(directory)
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    theirs = hf_tok(firsts, seconds, return_token_type_ids=True)
    encs = m.tokenizer.encode(PAIRS)
    assert [e.ids for e in encs] == theirs["input_ids"]
    if model_type == "bert":
        assert [e.type_ids for e in encs] == theirs["token_type_ids"]
        for e in encs:  # [CLS] A [SEP] -> 0, B [SEP] -> 1
            n_first = e.sequence_ids.index(1)
            assert e.type_ids == [0] * n_first + [1] * (len(e.ids) - n_first)


def test_bert_token_type_ids_change_the_output(loaded):
    m, hf, _ = loaded("bert", "base")
    ids, mask, types = padded(m, PAIRS)
    assert int(types.sum()) > 0
    with torch.inference_mode():
        with_types = m.runner.model(ids, mask, types)
        without = m.runner.model(ids, mask, torch.zeros_like(types))
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert max_diff_on_tokens(with_types, theirs, mask) < ATOL
    second = (types == 1) & mask.bool()
    assert float((with_types[second] - without[second]).abs().max()) > 1e-2
    # And the pipelines pass them: embedding the pair equals pooling the typed forward pass.
    got = m.embed(PAIRS, pooling="cls", normalize=False)
    np.testing.assert_allclose(got, with_types[:, 0].numpy(), atol=ATOL, rtol=0)


# -- real pretrained checkpoints ------------------------------------------------------------------------------
NOVEL_SENTENCES = [
    "It was a dark and stormy <mask>.",
    "She opened the <mask> and looked outside.",
    "The carriage rolled slowly along the muddy road towards the village, and the old coachman <mask> softly.",
    "“I shall not go,” said he.",
]


@pytest.fixture(scope="module")
def novels_pair(novels_small):
    from transformers import RobertaForMaskedLM

    hf = RobertaForMaskedLM.from_pretrained(novels_small, dtype=torch.float32).eval()
    return ro.load(novels_small), hf


def test_novels_small_hidden_states_and_mlm_logits_match(novels_pair):
    m, hf = novels_pair
    assert m.config.num_hidden_layers == 6 and m.config.hidden_size == 384
    ours, theirs, out, mask = forward_both(m, hf, NOVEL_SENTENCES)
    assert max_diff_on_tokens(ours, theirs, mask) < ATOL
    with torch.inference_mode():
        logits = m.runner.model.mlm(ours)  # (B, T, V)
    assert max_diff_on_tokens(logits, out.logits, mask) < ATOL
    # A pretrained model, not noise: "stormy <mask>" -> "night" (its README's example), in both.
    pos = m.tokenizer.encode(NOVEL_SENTENCES[:1])[0].ids.index(m.tokenizer.mask_id)
    night = m.tokenizer.tok.token_to_id("Ġnight")
    assert int(logits[0, pos].argmax()) == int(out.logits[0, pos].argmax()) == night


ST_SENTENCES = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "The stock market fell sharply on Monday after the announcement.",
    "How do I reset my password?",
    "I forgot my login credentials and cannot sign in.",
    "",
    "   ",
    "\t\n",
    "Hello",
    "HELLO WORLD!!!",
    "Naïve café owners in Zürich serve crème brûlée.",
    "日本語のテキストも少し入れておきます。",
    "Emoji are tokens too 🙂🚀",
    "x" * 300,
    "numbers 3.14159 and 2,718 and -42",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "The quick brown fox jumps over the lazy dog. " * 8,
    "Ce n'est pas une pipe.",
    "def f(x): return x ** 2  # code is text as well",
    "What's the weather like in San Francisco today?",
]


@pytest.fixture(scope="module")
def default_model(default_model_dir):
    return ro.load(default_model_dir)


def test_default_model_matches_sentence_transformers(default_model, default_model_dir):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_model_dir), device="cpu")
    expected = st.encode(ST_SENTENCES, normalize_embeddings=True, convert_to_numpy=True, batch_size=8)
    got = default_model.embed(ST_SENTENCES)
    assert default_model.pooling == "mean" and got.shape == (len(ST_SENTENCES), 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_batched_embeddings_equal_single(default_model):
    together = default_model.embed(ST_SENTENCES)
    alone = np.stack([default_model.embed(s) for s in ST_SENTENCES])
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)


def test_bfloat16_embeddings_close_to_float32(default_model, default_model_dir):
    low = ro.load(default_model_dir, dtype="bfloat16")
    assert next(low.runner.model.parameters()).dtype == torch.bfloat16
    full = default_model.embed(ST_SENTENCES)
    half = low.embed(ST_SENTENCES)
    assert half.dtype == np.float32
    cosine = (full * half).sum(1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1))
    assert cosine.min() > 0.99, cosine
    assert np.abs(full - half).max() > 1e-6  # it really ran in bf16
