"""MLM pretraining data: text files -> token blocks of exactly `max_length` ids, cached on disk.

Input: plain .txt, .txt.gz / .gz, or .jsonl(.gz) with a `text` field; a directory means all such files in it, sorted.
In text files one line is a paragraph and a blank line ends a document (the shared novels corpus's format); in
JSONL each record is a document whose lines are paragraphs.

Packing is RoBERTa's FULL-SENTENCES (fairseq `--sample-break-mode complete`), as the reference recipe describes:
every block is `<s> p1 </s> p2 </s> ... </s>`, paragraphs joined with `</s>`, blocks filled with whole sentences
taken in order; a sentence that does not fit starts the next block (the rest is padded), and a sentence longer than
a block is cut into block-sized pieces. Blocks may continue into the next document (as in RoBERTa), with an extra
`</s>` marking the document boundary. There is no next-sentence prediction.

1 % of blocks (a fixed seeded choice) is held out. Blocks are written once as a .npy (uint16 when the vocabulary
fits) with a JSON key describing the sources and tokenizer, and later memory-mapped: resuming never re-tokenizes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from ..errors import InvalidInputError

SUFFIXES = (".txt", ".txt.gz", ".gz", ".jsonl", ".jsonl.gz", ".text")
CACHE_VERSION = 1
# A sentence ends with . ! ? (optionally followed by closing quotes/brackets) and the next token starts a new word.
SENTENCE_END = re.compile(r"[.!?][\"'”’)\]_]*$")


@dataclass(frozen=True)
class Specials:
    """Ids of the special tokens that packing and masking need."""

    bos: int
    eos: int
    pad: int
    mask: int
    all: tuple[int, ...]  # every special/added token id: never masked, never a random replacement

    @classmethod
    def of(cls, tok: HFTokenizer) -> Specials:
        def first(*names: str) -> int:
            for name in names:
                i = tok.token_to_id(name)
                if i is not None:
                    return i
            raise InvalidInputError(f"the tokenizer has none of the special tokens {', '.join(names)}")

        bos, eos = first("<s>", "[CLS]"), first("</s>", "[SEP]")
        pad, mask = first("<pad>", "[PAD]"), first("<mask>", "[MASK]")
        added = [i for i, t in tok.get_added_tokens_decoder().items() if t.special]
        return cls(bos, eos, pad, mask, tuple(sorted({bos, eos, pad, mask, *added})))


def list_files(source: str | Path) -> list[Path]:
    """The text files `source` names: itself, or every supported file in the directory, sorted by name."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(SUFFIXES))
        if not files:
            raise InvalidInputError(f"no text files in {path}: expected names ending in {', '.join(SUFFIXES)}")
        return files
    if not path.is_file():
        raise InvalidInputError(f"data path {path} does not exist")
    return [path]


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from f
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc


def documents(files: list[Path]) -> Iterator[list[str]]:
    """Each document as its list of non-empty paragraphs."""
    for path in files:
        if ".jsonl" in path.name:
            for n, line in enumerate(_lines(path), 1):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise InvalidInputError(f"{path} line {n}: expected a JSON object with a 'text' field") from exc
                paras = [p.strip() for p in str(text).splitlines() if p.strip()]
                if paras:
                    yield paras
            continue
        doc: list[str] = []
        for line in _lines(path):
            line = line.strip()
            if line:
                doc.append(line)
            elif doc:
                yield doc
                doc = []
        if doc:
            yield doc


PACKINGS = ("dense", "sentences")


class Packer:
    """Packs tokenized paragraphs, in order, into (max_length,) blocks `<s> ... </s>`.

    "dense" (default): the paragraphs' tokens with their `</s>` separators run on from block to block, so every
    block is full (no padding) and each step trains on max_length real tokens. "sentences" (fairseq's `complete`
    break mode): blocks hold whole sentences only and are padded where the next sentence does not fit (about 14 %
    padding on the novels at 128 tokens).
    """

    def __init__(self, tok: HFTokenizer, max_length: int, mode: str = "dense"):
        if max_length < 8:
            raise InvalidInputError(f"max_length must be at least 8, got {max_length}")
        if mode not in PACKINGS:
            raise InvalidInputError(f"unknown packing {mode!r}; choose one of {', '.join(PACKINGS)}")
        self.sp = Specials.of(tok)
        self.max_length = max_length
        self.mode = mode
        # Per-id lookup tables, so sentence boundaries are found with array ops instead of per-token Python.
        vocab = tok.get_vocab()
        self.ends_sentence = np.zeros(tok.get_vocab_size(), dtype=bool)
        self.starts_word = np.zeros(tok.get_vocab_size(), dtype=bool)
        wordpiece = any(t.startswith("##") for t in vocab)  # WordPiece marks continuations; BPE marks word starts
        for token, i in vocab.items():
            self.ends_sentence[i] = bool(SENTENCE_END.search(token))
            self.starts_word[i] = not token.startswith("##") if wordpiece else token.startswith(("Ġ", "▁"))
        self.blocks: list[np.ndarray] = []
        self.cur: list[int] = [self.sp.bos]

    def _close(self) -> None:
        if len(self.cur) > 1:
            if self.cur[-1] != self.sp.eos:  # a block ending on a separator needs no second </s>
                self.cur.append(self.sp.eos)
            block = np.full(self.max_length, self.sp.pad, dtype=np.int32)
            block[: len(self.cur)] = self.cur
            self.blocks.append(block)
        self.cur = [self.sp.bos]

    def _room(self) -> int:
        return self.max_length - 1 - len(self.cur)  # one slot stays for the closing </s>

    def _push_dense(self, ids: list[int]) -> None:
        while ids:
            if self._room() == 0:
                self._close()
            take = self._room()
            self.cur.extend(ids[:take])
            ids = ids[take:]

    def _push_sentences(self, ids: np.ndarray) -> None:
        cut = np.flatnonzero(self.ends_sentence[ids[:-1]] & self.starts_word[ids[1:]]) + 1
        room_max = self.max_length - 2
        for sent in np.split(ids, cut):
            for lo in range(0, len(sent), room_max):  # a sentence longer than a block is cut into pieces
                piece = sent[lo: lo + room_max].tolist()
                if len(piece) > self._room():
                    self._close()
                self.cur.extend(piece)

    def _separator(self) -> None:
        if len(self.cur) == 1:
            return  # a block that just began: the previous block's closing </s> already separates
        if self._room() == 0:
            self._close()  # the closing </s> is the separator
        else:
            self.cur.append(self.sp.eos)

    def add_paragraph(self, ids: list[int]) -> None:
        if self.mode == "dense":
            self._push_dense(ids)
        else:
            self._push_sentences(np.asarray(ids, dtype=np.int32))
        self._separator()

    def end_document(self) -> None:
        self._separator()  # the extra </s> between documents (RoBERTa)

    def finish(self) -> np.ndarray:
        self._close()
        if not self.blocks:
            return np.zeros((0, self.max_length), dtype=np.int32)
        return np.stack(self.blocks)  # (N, L)


def tokenize_and_pack(files: list[Path], tok: HFTokenizer, max_length: int, packing: str = "dense",
                      progress: Callable[[int], None] | None = None, chunk: int = 2000) -> np.ndarray:
    """(N, max_length) int32 blocks from the files. `progress(n_paragraphs)` is called after each chunk."""
    packer = Packer(tok, max_length, packing)
    for doc in documents(files):
        for lo in range(0, len(doc), chunk):
            encs = tok.encode_batch(doc[lo: lo + chunk], add_special_tokens=False)
            for enc in encs:
                packer.add_paragraph(enc.ids)
            if progress:
                progress(len(encs))
        packer.end_document()
    return packer.finish()


def split_blocks(n: int, eval_fraction: float = 0.01, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, eval indices): a fixed seeded choice of round(n * fraction) blocks (at least 1) held out."""
    if n < 2:
        raise InvalidInputError(f"the corpus packs into {n} block(s); at least 2 are needed (1 held out)")
    n_eval = min(n - 1, max(1, round(n * eval_fraction)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_eval:]), np.sort(perm[:n_eval])


def cache_key(files: list[Path], tok: HFTokenizer, max_length: int, packing: str) -> dict:
    """What the cached blocks depend on. File size + mtime stand in for content (hashing 75 MB at each start would
    cost more than the check is worth)."""
    tok_hash = hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]
    return {
        "version": CACHE_VERSION,
        "files": [[str(p.resolve()), p.stat().st_size, int(p.stat().st_mtime)] for p in files],
        "tokenizer": tok_hash,
        "max_length": max_length,
        "packing": packing,
    }


def load_blocks(source: str | Path, tok: HFTokenizer, max_length: int, cache_dir: Path, packing: str = "dense",
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """All blocks of `source`, from `cache_dir` when a cache with the same key exists, else tokenized and cached.
    Returned memory-mapped (read-only) so a large corpus costs no RAM."""
    files = list_files(source)
    key = cache_key(files, tok, max_length, packing)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    npy, meta = cache_dir / f"blocks-{digest}.npy", cache_dir / f"blocks-{digest}.json"
    if npy.exists() and meta.exists() and json.loads(meta.read_text()).get("key") == key:
        return np.load(npy, mmap_mode="r")
    blocks = tokenize_and_pack(files, tok, max_length, packing, progress)
    dtype = np.uint16 if tok.get_vocab_size() <= np.iinfo(np.uint16).max + 1 else np.int32
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = npy.with_suffix(".tmp.npy")
    np.save(tmp, blocks.astype(dtype))
    tmp.replace(npy)  # atomic: a killed run never leaves a half-written cache behind
    real = int((blocks != Specials.of(tok).pad).sum())
    meta.write_text(json.dumps({"key": key, "blocks": len(blocks), "real_tokens": real}, indent=1) + "\n")
    return np.load(npy, mmap_mode="r")
