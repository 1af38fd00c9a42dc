"""Tokenizer parity with Hugging Face on real data, offsets, BERT pairs and sliding windows.

Ids must equal transformers' roberta-base tokenizer on every sentence of SST-2 dev, CoNLL-2003 valid, MRPC dev
(singles and pairs) and 2,000 novel paragraphs, for both of our RoBERTa loading paths: tokenizer.json, and the
fallback built from vocab.json + merges.txt alone. BERT pairs must match MiniLM's WordPiece tokenizer, token types
included. Windows must respect the model length, keep specials and the first text of a pair, and overlap exactly.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest

from robertaops.errors import InvalidInputError
from robertaops.tokenizer import Tokenizer

N_PARAGRAPHS = 2000


# -- data (formats per each folder's PROVENANCE.md) ------------------------------------------------------------
def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC files start with a BOM
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))  # MRPC has bare quotes


def conll_sentences(path: Path) -> list[str]:
    sentences, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if tokens:
                sentences.append(" ".join(tokens))
            tokens = []
        elif not line.startswith("-DOCSTART-"):
            tokens.append(line.split(" ")[0])
    return sentences


def corpus_paragraphs(path: Path, n: int) -> list[str]:
    """One paragraph per line; blank lines separate novels (PROVENANCE.md), so paragraphs are non-empty lines."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(line.rstrip("\n"))
                if len(out) == n:
                    break
    return out


@pytest.fixture(scope="module")
def corpora(data_dir) -> dict[str, list]:
    mrpc = read_tsv(data_dir / "mrpc" / "dev.tsv")
    out = {
        "sst2": [row["sentence"] for row in read_tsv(data_dir / "sst2" / "dev.tsv")],
        "conll": conll_sentences(data_dir / "conll2003" / "valid.txt"),
        "mrpc": [row["#1 String"] for row in mrpc] + [row["#2 String"] for row in mrpc],
        "mrpc_pairs": [(row["#1 String"], row["#2 String"]) for row in mrpc],
        "corpus": corpus_paragraphs(data_dir / "pretrain-corpus" / "part-00.txt.gz", N_PARAGRAPHS),
    }
    # The published sizes, so a parsing slip cannot shrink the test silently.
    assert (len(out["sst2"]), len(out["conll"]), len(out["mrpc_pairs"]), len(out["corpus"])) == (872, 3250, 408, 2000)
    return out


# -- tokenizers -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_roberta(roberta_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(roberta_tokenizer_dir)


@pytest.fixture(scope="module")
def roberta_full(roberta_tokenizer_dir) -> Tokenizer:
    return Tokenizer.from_dir(roberta_tokenizer_dir, family="roberta", type_vocab_size=1)


@pytest.fixture(scope="module")
def roberta_fallback(roberta_tokenizer_dir, tmp_path_factory) -> Tokenizer:
    d = tmp_path_factory.mktemp("vocab-merges-only")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(roberta_tokenizer_dir / name, d / name)
    return Tokenizer.from_dir(d, family="roberta", type_vocab_size=1)


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab+merges"])
def ours(request, roberta_full, roberta_fallback) -> Tokenizer:
    return roberta_full if request.param == "tokenizer.json" else roberta_fallback


@pytest.fixture(scope="module")
def hf_ids(hf_roberta, corpora) -> dict[str, list[list[int]]]:
    """transformers' ids per corpus, computed once for both of our tokenizers."""
    out = {name: hf_roberta(texts)["input_ids"] for name, texts in corpora.items() if name != "mrpc_pairs"}
    pairs = corpora["mrpc_pairs"]
    out["mrpc_pairs"] = hf_roberta([a for a, _ in pairs], [b for _, b in pairs])["input_ids"]
    return out


# -- RoBERTa ids ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("corpus", ["sst2", "conll", "mrpc", "corpus", "mrpc_pairs"])
def test_roberta_ids_identical_to_transformers(ours, corpora, hf_ids, corpus):
    texts = corpora[corpus]
    got = ours.ids(texts)
    mismatches = [i for i, (a, b) in enumerate(zip(got, hf_ids[corpus], strict=True)) if a != b]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ; first: {texts[mismatches[0]]!r}"


@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("corpus", ["sst2", "mrpc_pairs"])
def test_lengths_count_the_same_ids(ours, corpora, hf_ids, corpus, inline):
    """The server's token counts (offset-free for plain strings; one text at a time on its event loop) are the
    lengths of transformers' ids."""
    assert ours.lengths(corpora[corpus], inline=inline) == [len(ids) for ids in hf_ids[corpus]]


def test_lengths_inline_refuses_what_encode_refuses(ours):
    with pytest.raises(InvalidInputError, match="input 1 must be a string"):
        ours.lengths(["fine", 3], inline=True)


def test_roberta_pair_layout(ours, corpora):
    """<s> A </s></s> B </s>, where A and B are the texts' own tokens."""
    pairs = corpora["mrpc_pairs"][:50]
    singles = ours.encode([t for pair in pairs for t in pair])
    for k, enc in enumerate(ours.encode(pairs)):
        a, b = singles[2 * k].ids[1:-1], singles[2 * k + 1].ids[1:-1]
        assert enc.ids == [0, *a, 2, 2, *b, 2]


def test_decode_gives_back_the_exact_text(ours, corpora):
    """Byte-level BPE is lossless, and nothing is truncated (some paragraphs run to 100,000+ tokens)."""
    texts = corpora["sst2"] + corpora["corpus"]
    ids = ours.ids(texts)
    assert max(len(i) for i in ids) > 100_000
    assert [ours.decode(i) for i in ids] == texts


# -- offsets ----------------------------------------------------------------------------------------------------
def test_offsets_recover_each_token_text(ours, hf_roberta, corpora):
    sentences = corpora["conll"][:300]
    expected = hf_roberta(sentences, return_offsets_mapping=True)["offset_mapping"]
    for text, enc, theirs in zip(sentences, ours.encode(sentences), expected, strict=True):
        assert [tuple(o) for o in enc.offsets] == [tuple(o) for o in theirs]
        previous_end = 0
        for token_id, (start, end), special in zip(enc.ids, enc.offsets, enc.special_tokens_mask, strict=True):
            if special:
                assert (start, end) == (0, 0)
                continue
            piece = ours.tok.decoder.decode([ours.id_to_token(token_id)])  # "Ġword" -> " word"
            assert text[start:end] == piece.lstrip(" "), (text, piece)
            assert start >= previous_end
            previous_end = end


EDGE_CASES = [
    "Paris is the <mask> of France.",  # <mask> swallows the space before it (lstrip), as in roberta-base
    "x  <mask>", "a<mask>b", "<mask> first",
    "Hello <s> there </s> and <pad> <unk>",
    " leading space", "  ", "", "trailing   ", "tab\tand\nnewline", "naïve café ☕ 日本",
]


def test_masks_specials_and_spaces_identical_to_transformers(ours, hf_roberta, corpora):
    pairs = [(" leading", " pairs here <mask>."), *corpora["mrpc_pairs"][:100]]
    singles = hf_roberta(EDGE_CASES, return_offsets_mapping=True)
    paired = hf_roberta([a for a, _ in pairs], [b for _, b in pairs], return_offsets_mapping=True)
    for texts, theirs in ((EDGE_CASES, singles), (pairs, paired)):
        encs = ours.encode(texts)
        assert [e.ids for e in encs] == theirs["input_ids"]
        assert [e.offsets for e in encs] == [[tuple(o) for o in row] for row in theirs["offset_mapping"]]
    assert ours.ids(["the <mask>"])[0] == [0, 627, ours.mask_id, 2]


def test_pair_offsets_index_their_own_text(ours):
    a, b = "Angela Merkel visited Paris.", "She met Emmanuel Macron there."
    enc = ours.encode([(a, b)])[0]
    spans = zip(enc.sequence_ids, enc.offsets, strict=True)
    words = {(seq, (a, b)[seq][s:e]) for seq, (s, e) in spans if seq is not None}
    assert (0, "Paris") in words and (1, "Macron") in words


# -- BERT -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_bert(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab.txt"])
def bert(request, default_model_dir, tmp_path_factory) -> Tokenizer:
    if request.param == "tokenizer.json":
        return Tokenizer.from_dir(default_model_dir, family="bert", type_vocab_size=2)
    d = tmp_path_factory.mktemp("wordpiece-only")
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(default_model_dir / name, d / name)
    return Tokenizer.from_dir(d, family="bert", type_vocab_size=2)


def test_bert_pairs_and_type_ids_identical_to_transformers(bert, hf_bert, corpora):
    pairs = corpora["mrpc_pairs"]
    theirs = hf_bert([a for a, _ in pairs], [b for _, b in pairs], return_token_type_ids=True)
    encs = bert.encode(pairs)
    assert [e.ids for e in encs] == theirs["input_ids"]
    assert [e.type_ids for e in encs] == theirs["token_type_ids"]
    cls_id, sep_id = hf_bert.cls_token_id, hf_bert.sep_token_id
    for e in encs:  # [CLS] A [SEP] B [SEP], types 0 up to the first [SEP], 1 after
        first_sep = e.ids.index(sep_id)
        assert e.ids[0] == cls_id and e.ids[-1] == sep_id and e.ids.count(sep_id) == 2
        assert e.type_ids == [0] * (first_sep + 1) + [1] * (len(e.ids) - first_sep - 1)


def test_bert_single_ids_identical_to_transformers(bert, hf_bert, corpora):
    texts = corpora["sst2"] + corpora["conll"][:500]
    assert bert.ids(texts) == hf_bert(texts)["input_ids"]


# -- windows ----------------------------------------------------------------------------------------------------
MAX_LEN, STRIDE = 64, 16


@pytest.fixture(scope="module")
def long_text(corpora) -> str:
    """About 3,000 tokens of prose (a few of the corpus's lines are whole chapters: too long to be quick here)."""
    return " ".join([p for p in corpora["corpus"] if 200 < len(p) < 2000][:30])


def content(w) -> list[int]:
    return [t for t, s in zip(w.ids, w.special, strict=True) if not s]


def test_windows_cover_a_long_input_with_exact_overlap(roberta_full, long_text):
    enc = roberta_full.encode([long_text])[0]
    tokens = enc.ids[1:-1]
    assert len(tokens) > 10 * MAX_LEN
    windows = roberta_full.windows(7, enc, MAX_LEN, STRIDE, truncate=False)
    assert len(windows) > 10
    rebuilt: list[int] = []
    for k, w in enumerate(windows):
        assert w.item == 7 and len(w) <= MAX_LEN
        assert w.ids[0] == 0 and w.ids[-1] == 2 and w.special[0] == w.special[-1] == 1
        assert len(w.ids) == len(w.type_ids) == len(w.offsets) == len(w.special)
        assert content(w) == tokens[w.first : w.first + w.content]
        if k:
            prev = windows[k - 1]
            assert w.first == prev.first + prev.content - STRIDE  # overlap of exactly `stride` tokens
            assert content(w)[:STRIDE] == content(prev)[-STRIDE:]
            rebuilt += content(w)[STRIDE:]
        else:
            assert w.first == 0
            rebuilt += content(w)
    assert all(len(w) == MAX_LEN for w in windows[:-1])  # full windows, no waste
    assert rebuilt == tokens  # every token, in order, once


def test_windows_of_a_pair_keep_the_first_text_whole(long_text):
    from robertaops.resolve import packaged_default

    tok = Tokenizer.from_dir(packaged_default(), family="bert", type_vocab_size=2)
    query = "what happened to the father?"
    enc = tok.encode([(query, long_text)])[0]
    n_query = enc.sequence_ids.index(1)  # [CLS] query [SEP]
    second = enc.ids[n_query:-1]
    windows = tok.windows(0, enc, MAX_LEN, STRIDE, truncate=False)
    assert len(windows) > 5
    rebuilt: list[int] = []
    for k, w in enumerate(windows):
        assert len(w) <= MAX_LEN
        assert w.ids[:n_query] == enc.ids[:n_query] and w.ids[-1] == enc.ids[-1]
        assert w.type_ids == [0] * n_query + [1] * (len(w) - n_query)
        piece = w.ids[n_query:-1]
        assert piece == second[w.first : w.first + w.content]
        rebuilt += piece if k == 0 else piece[STRIDE:]
    assert rebuilt == second


def test_truncate_gives_the_first_window_only(roberta_full, long_text):
    enc = roberta_full.encode([long_text])[0]
    (only,) = roberta_full.windows(0, enc, MAX_LEN, STRIDE, truncate=True)
    first = roberta_full.windows(0, enc, MAX_LEN, STRIDE, truncate=False)[0]
    assert only.ids == first.ids == enc.ids[: MAX_LEN - 1] + [2]


def test_short_input_is_one_unchanged_window(roberta_full):
    enc = roberta_full.encode(["A short sentence."])[0]
    (w,) = roberta_full.windows(0, enc, MAX_LEN, STRIDE, truncate=False)
    assert w.ids == enc.ids and w.first == 0 and w.content == len(enc.ids) - 2


@pytest.mark.parametrize("where", [0.5, 0.3, 0.0, 1.0])
def test_window_around_centres_the_position(roberta_full, long_text, where):
    enc = roberta_full.encode([long_text])[0]
    n_content = len(enc.ids) - 2
    position = 1 + round(where * (n_content - 1))  # index in the full encoding
    w = roberta_full.window_around(0, enc, MAX_LEN, position)
    assert len(w) == MAX_LEN and w.ids[0] == 0 and w.ids[-1] == 2
    index = position - w.first  # its index inside the window
    assert w.ids[index] == enc.ids[position] and 1 <= index < len(w) - 1
    if 0.1 < where < 0.9:  # away from the edges it sits in the middle
        assert abs(index - len(w) / 2) <= 1


def test_first_text_too_long_for_any_window_is_an_input_error(roberta_full, long_text):
    enc = roberta_full.encode([(long_text, "short")])[0]
    with pytest.raises(InvalidInputError, match="leaves no room"):
        roberta_full.windows(0, enc, MAX_LEN, STRIDE, truncate=False)
