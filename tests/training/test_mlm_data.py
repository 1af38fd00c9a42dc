"""Corpus reading and packing: block layout, separators, order, held-out split, the cache."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from robertaops.errors import InvalidInputError
from robertaops.training.mlm_data import Packer, documents, list_files, load_blocks, split_blocks, tokenize_and_pack


@pytest.fixture(scope="module")
def tok(roberta_tokenizer_dir):
    return Tokenizer.from_file(str(roberta_tokenizer_dir / "tokenizer.json"))


SENT = "The quick brown fox jumps over the lazy dog near the river bank."


def write_corpus(path):
    # two documents (blank line between), three paragraphs in the first
    path.write_text(f"{SENT} {SENT}\nShort one.\n{SENT * 12}\n\nSecond book begins. {SENT}\n")
    return path


def test_documents_from_txt_gz_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("p1\np2\n\n\np3\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("q1\n")
    (tmp_path / "c.jsonl").write_text(json.dumps({"text": "r1\n\nr2"}) + "\n\n" + json.dumps({"text": "s1"}) + "\n")
    (tmp_path / "ignored.csv").write_text("x")
    files = list_files(tmp_path)
    assert [f.name for f in files] == ["a.txt", "b.txt.gz", "c.jsonl"]
    assert list(documents(files)) == [["p1", "p2"], ["p3"], ["q1"], ["r1", "r2"], ["s1"]]
    (tmp_path / "bad.jsonl").write_text('{"txt": 1}\n')
    with pytest.raises(InvalidInputError, match="bad.jsonl line 1"):
        list(documents([tmp_path / "bad.jsonl"]))


@pytest.mark.parametrize("mode", ["dense", "sentences"])
def test_blocks_layout(tmp_path, tok, mode):
    path = write_corpus(tmp_path / "c.txt")
    blocks = tokenize_and_pack([path], tok, 32, mode)  # (N, 32)
    assert blocks.shape[1] == 32 and len(blocks) > 4
    for b in blocks:
        real = b[b != 1]
        assert real[0] == 0 and real[-1] == 2  # <s> ... </s>
        assert (b[len(real):] == 1).all()  # padding only at the end
        assert not (real[1:] == 0).any()  # one <s> per block
    # every paragraph token, in order, nothing else but specials
    paragraphs = [p for doc in documents([path]) for p in doc]
    expected = [t for enc in tok.encode_batch(paragraphs, add_special_tokens=False) for t in enc.ids]
    assert [t for t in blocks.ravel().tolist() if t > 2] == expected
    if mode == "dense":  # every block but the last is full
        assert all((b != 1).all() for b in blocks[:-1])
    else:  # sentences are never cut: each block's text ends with a sentence's end
        for b in blocks[:-1]:
            text = tok.decode(b.tolist(), skip_special_tokens=True)
            assert text.rstrip().endswith("."), text
        assert (blocks == 1).sum() > 0


def test_dense_keeps_every_token_in_order(tok):
    packer = Packer(tok, 16)
    paragraphs = [list(range(10, 40)), list(range(100, 105))]
    for p in paragraphs:
        packer.add_paragraph(p)
    packer.end_document()
    packer.add_paragraph([7, 8])
    blocks = packer.finish()  # (N, 16)
    stream = [t for b in blocks for t in b.tolist() if t not in (0, 1)]
    # 30 tokens run across blocks (14 content slots each): a block's closing </s> doubles as no separator
    assert [t for t in stream if t != 2] == list(range(10, 40)) + list(range(100, 105)) + [7, 8]
    assert blocks[0].tolist() == [0, *range(10, 24), 2]
    assert blocks[1].tolist() == [0, *range(24, 38), 2]
    # paragraphs joined by </s>, the document boundary doubled, then padding after the last block's </s>
    assert blocks[2].tolist() == [0, 38, 39, 2, 100, 101, 102, 103, 104, 2, 2, 7, 8, 2, 1, 1]


def test_split_is_deterministic_one_percent():
    train, held = split_blocks(1000)
    assert len(held) == 10 and len(train) == 990 and not set(train) & set(held)
    again = split_blocks(1000)
    assert np.array_equal(held, again[1])
    with pytest.raises(InvalidInputError):
        split_blocks(1)


def test_cache_is_reused_and_keyed(tmp_path, tok):
    path = write_corpus(tmp_path / "c.txt")
    calls = []
    first = load_blocks(path, tok, 32, tmp_path / "cache", progress=calls.append)
    assert calls and first.dtype == np.uint16
    calls.clear()
    second = load_blocks(path, tok, 32, tmp_path / "cache", progress=calls.append)
    assert not calls and np.array_equal(first, second)  # no re-tokenization
    other = load_blocks(path, tok, 64, tmp_path / "cache", progress=calls.append)
    assert calls and other.shape[1] == 64  # a different key tokenizes again
