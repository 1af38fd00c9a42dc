"""Fill-mask on the real pretrained RoBERTa (roberta-novels-small) against transformers' fill-mask pipeline.

Long inputs get one window per mask, centred on it; the expected values there come from running the transformers
model on exactly that window. The novels model was pretrained on 128-token blocks, so positions past 128 are
untrained: the "same answer as the short text" check loads it with max_length=128.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import robertaops as ro

SENTENCES = [
    "It was a dark and stormy <mask>.",
    "She opened the <mask> and looked outside.",
    "He took off his <mask> and sat down by the fire.",
    "<mask> said nothing for a long while.",
]


@pytest.fixture(scope="module")
def hf_fill(novels_small):
    model = transformers.AutoModelForMaskedLM.from_pretrained(novels_small, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(novels_small)
    return model, transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer)


def _assert_same_candidates(ours, theirs):
    assert [(c["token"], c["token_str"], c["sequence"]) for c in ours] == [
        (c["token"], c["token_str"], c["sequence"]) for c in theirs
    ]
    assert [c["score"] for c in ours] == pytest.approx([c["score"] for c in theirs], abs=1e-4)


def test_fill_mask_equals_transformers(novels_model, hf_fill):
    _, pipe = hf_fill
    ours = novels_model.fill_mask(SENTENCES, top_k=5)
    for text, row in zip(SENTENCES, ours, strict=True):
        _assert_same_candidates(row, pipe(text, top_k=5))


def test_known_answers(novels_model):
    """The model card's examples: a wrong model, tokenizer or MLM head would not give these."""
    night = novels_model.fill_mask("It was a dark and stormy <mask>.")
    assert [c["token_str"].strip() for c in night] == ["night", "sky", "storm", "air", "morning"]
    assert night[0]["sequence"] == "It was a dark and stormy night."
    door = novels_model.fill_mask("She opened the <mask> and looked outside.", top_k=2)
    assert [c["token_str"].strip() for c in door] == ["door", "window"]
    assert door[0]["score"] > 0.5
    assert 0 < night[-1]["score"] < night[0]["score"] < 1


def test_multiple_masks_give_a_list_per_mask(novels_model, hf_fill):
    _, pipe = hf_fill
    text = "The <mask> sat on the <mask>."
    ours = novels_model.fill_mask(text, top_k=3)
    theirs = pipe(text, top_k=3)
    assert len(ours) == 2 and all(len(row) == 3 for row in ours)
    for o, t in zip(ours, theirs, strict=True):
        _assert_same_candidates(o, t)  # including HF's special tokens in `sequence` when there are several masks


def test_batch_equals_single(novels_model):
    batch = novels_model.fill_mask(SENTENCES[:2] + ["The <mask> sat on the <mask>."], top_k=3)
    assert len(batch) == 3 and len(batch[2]) == 2
    for text, expected in zip(SENTENCES[:2], batch[:2], strict=True):
        single = novels_model.fill_mask(text, top_k=3)
        assert [c["token"] for c in single] == [c["token"] for c in expected]
        assert [c["score"] for c in single] == pytest.approx([c["score"] for c in expected], abs=1e-5)


def test_top_k(novels_model):
    assert len(novels_model.fill_mask(SENTENCES[0], top_k=1)) == 1
    twelve = novels_model.fill_mask(SENTENCES[0], top_k=12)
    assert len(twelve) == 12
    scores = [c["score"] for c in twelve]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(ro.InvalidInputError, match="top_k"):
        novels_model.fill_mask(SENTENCES[0], top_k=0)


def test_errors(novels_model, make_checkpoint):
    with pytest.raises(ro.InvalidInputError, match="<mask>"):
        novels_model.fill_mask("There is no mask here.")
    with pytest.raises(ro.InvalidInputError, match="input 1"):
        novels_model.fill_mask(["a <mask>.", "no mask"])
    directory, _ = make_checkpoint("roberta", "sequence_classification")
    with pytest.raises(ro.UnsupportedTaskError):
        ro.load(directory).fill_mask("a <mask>.")
    base_dir, _ = make_checkpoint("roberta", "base")
    with pytest.raises(ro.UnsupportedTaskError):
        ro.load(base_dir).fill_mask("a <mask>.")


# -- long inputs ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_text(novel_words):
    """~800 tokens of novel, the test sentence near the end, then a little more novel."""
    prefix = " ".join(novel_words[:600])
    prefix = prefix[: prefix.rindex(". ") + 1]
    return prefix + " It was a dark and stormy <mask>. " + " ".join(novel_words[600:640])


def _hf_on_window(hf_model, window, position):
    with torch.no_grad():
        logits = hf_model(torch.tensor([window.ids])).logits[0, position]  # (V,)
    return logits.softmax(-1).topk(5)


def test_long_input_uses_a_window_centred_on_the_mask(novels_model, hf_fill, long_text):
    m = novels_model
    hf_model, _ = hf_fill
    enc = m.tokenizer.encode([long_text])[0]
    assert len(enc.ids) > m.max_length
    mask = enc.ids.index(m.tokenizer.mask_id)
    window = m.tokenizer.window_around(0, enc, m.max_length, mask)
    assert len(window) == m.max_length
    assert window.ids[mask - window.first] == m.tokenizer.mask_id
    assert mask - window.first > m.max_length // 3  # a real window around the mask, not the text's first one

    ours = m.fill_mask(long_text)
    values, ids = _hf_on_window(hf_model, window, mask - window.first)
    assert [c["token"] for c in ours] == ids.tolist()
    assert [c["score"] for c in ours] == pytest.approx(values.tolist(), abs=1e-4)
    for c in ours:  # the whole long text comes back, the mask replaced
        assert c["sequence"] == long_text.replace(" <mask>", c["token_str"])


def test_long_input_answers_like_its_local_context(novels_small, long_text):
    """With windows the model was trained on (128 tokens), the far-away text leaves the answer unchanged."""
    m = ro.load(novels_small, max_length=128)
    long = m.fill_mask(long_text)
    short = m.fill_mask("It was a dark and stormy <mask>.")
    assert long[0]["token_str"] == short[0]["token_str"] == " night"
    assert len(long) == 5


def test_long_input_with_several_masks(novels_model, long_text):
    m = novels_model
    text = "The <mask> sat on the chair. " + long_text
    first, last = m.fill_mask(text, top_k=3)
    # Each mask gets its own window: the same one a text with only that mask gets.
    alone_first = m.fill_mask("The <mask> sat on the chair. " + long_text.replace("<mask>", "night"), top_k=3)
    alone_last = m.fill_mask(long_text, top_k=3)
    for both, alone in ((first, alone_first), (last, alone_last)):
        assert [c["token"] for c in both] == [c["token"] for c in alone]
        assert [c["score"] for c in both] == pytest.approx([c["score"] for c in alone], abs=1e-5)
    assert first[0]["sequence"].startswith("<s>The" + first[0]["token_str"] + " sat")  # several masks: HF style
    assert "<mask>" in first[0]["sequence"] and "<mask>" in last[0]["sequence"]


def test_truncate(novels_model, long_text):
    m = novels_model
    with pytest.raises(ro.InvalidInputError, match="beyond the first"):
        m.fill_mask(long_text, truncate=True)
    early = "The <mask> sat on the chair. " + long_text.replace("<mask>", "night")
    truncated = m.fill_mask(early, truncate=True)
    assert len(truncated) == 5
    assert truncated[0]["sequence"].startswith("The" + truncated[0]["token_str"] + " sat on the chair.")


def test_wordpiece_mask_on_a_bert_checkpoint(make_checkpoint):
    """BERT's [MASK] and WordPiece decoding (`token_str`, `sequence`) as transformers reports them."""
    directory, hf_model = make_checkpoint("bert", "mlm", initializer_range=0.3)
    pipe = transformers.pipeline("fill-mask", model=hf_model, tokenizer=transformers.AutoTokenizer.from_pretrained(
        directory))
    m = ro.load(directory)
    for text in ["Paris is the [MASK] of France.", "[MASK] and [MASK] went up the hill."]:
        ours, theirs = m.fill_mask(text, top_k=4), pipe(text, top_k=4)
        if isinstance(ours[0], dict):
            ours, theirs = [ours], [theirs]
        for o, t in zip(ours, theirs, strict=True):
            _assert_same_candidates(o, t)
    with pytest.raises(ro.InvalidInputError, match=r"\[MASK\]"):
        m.fill_mask("There is no <mask> token in BERT's vocabulary.")
