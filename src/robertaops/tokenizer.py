"""Tokenizer: a thin wrapper over Hugging Face `tokenizers` (Rust) for single texts and pairs.

Loads `tokenizer.json` when the checkpoint has one, else builds the same tokenizer from vocab.json + merges.txt
(byte-level BPE, RoBERTa) or vocab.txt (WordPiece, BERT). The checkpoint's own truncation/padding settings are
switched off: the pipelines decide how long inputs are split (`windows`), never the tokenizer behind their back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Encoding
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

from .errors import CheckpointError, InvalidInputError

Text = str | tuple[str, str]


@dataclass
class Window:
    """A model-sized piece of one input: specials + a slice of its tokens.

    `item` is the index of the input it came from; `first` the offset, among the input's content tokens, of this
    window's first content token (so window position k of a content token is full position k + first); `content`
    the number of content tokens it holds.
    """

    item: int
    ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[int]  # 1 where the token is a special token
    first: int
    content: int

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer:
    def __init__(self, tok: HFTokenizer, *, use_type_ids: bool):
        tok.no_truncation()
        tok.no_padding()
        self.tok = tok
        self.use_type_ids = use_type_ids
        vocab = tok.get_vocab()
        self.mask_token = next((t for t in ("<mask>", "[MASK]") if t in vocab), None)
        self.mask_id = vocab.get(self.mask_token) if self.mask_token else None
        self.unk_id = next((vocab[t] for t in ("<unk>", "[UNK]") if t in vocab), None)
        model = json.loads(tok.to_str())["model"]
        self.subword_prefix = model.get("continuing_subword_prefix")  # "##" for WordPiece, None for BPE

    @classmethod
    def from_dir(cls, directory: Path, *, family: str, type_vocab_size: int) -> Tokenizer:
        use_type_ids = type_vocab_size > 1
        if (directory / "tokenizer.json").exists():
            return cls(HFTokenizer.from_file(str(directory / "tokenizer.json")), use_type_ids=use_type_ids)
        settings = {}
        if (directory / "tokenizer_config.json").exists():
            settings = json.loads((directory / "tokenizer_config.json").read_text())
        if (directory / "vocab.json").exists() and (directory / "merges.txt").exists():
            bpe = ByteLevelBPETokenizer(
                str(directory / "vocab.json"), str(directory / "merges.txt"),
                add_prefix_space=bool(settings.get("add_prefix_space", False)), trim_offsets=True,
            )
            tok = bpe._tokenizer
            # <mask> swallows the space before it (lstrip), as in roberta-base's tokenizer.json: no lone "Ġ" token
            tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True)])
            tok.post_processor = RobertaProcessing(  # add_prefix_space as the pre-tokenizer's, else offsets keep spaces
                ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                trim_offsets=True, add_prefix_space=bool(settings.get("add_prefix_space", False)),
            )
            return cls(tok, use_type_ids=use_type_ids)
        if (directory / "vocab.txt").exists():
            lowercase = bool(settings.get("do_lower_case", True))
            wp = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=lowercase)
            return cls(wp._tokenizer, use_type_ids=use_type_ids)
        raise CheckpointError(
            f"no tokenizer in {directory}: expected tokenizer.json, vocab.json + merges.txt ({family}) or vocab.txt"
        )

    # -- encoding ---------------------------------------------------------------------------------------------
    def encode(self, texts: list[Text]) -> list[Encoding]:
        """Full encodings (specials added, nothing truncated). Texts are str or (a, b) pairs."""
        return self.tok.encode_batch(_checked(texts))

    def ids(self, texts: list[Text]) -> list[list[int]]:
        return [e.ids for e in self.encode(texts)]

    def ids_fast(self, texts: list[str]) -> list[list[int]]:
        """Token ids (specials added) of plain strings, without the character offsets `encode` computes: the same
        ids at a fraction of the cost, for callers that never map tokens back to characters."""
        return [e.ids for e in self.tok.encode_batch_fast(texts)]

    def lengths(self, texts: list[Text], *, inline: bool = False) -> list[int]:
        """Token counts (specials included) of texts or (a, b) pairs; plain strings take the offset-free path.

        `inline=True`, for a few short texts on an event loop: one `encode` per text, which keeps the GIL. The batch
        calls release it, and a thread running Python meanwhile (the model's worker) then holds the loop up until it
        lets go, up to the 5 ms switch interval (a 16-token text: 21 us alone, 5.4 ms beside a busy Python thread;
        `encode`: 26 us and 0.1 ms)."""
        if inline:
            return [len(self.tok.encode(t) if isinstance(t, str) else self.tok.encode(*t)) for t in _checked(texts)]
        if all(isinstance(t, str) for t in texts):
            return [len(ids) for ids in self.ids_fast(texts)]
        return [len(e.ids) for e in self.encode(texts)]

    def windows(self, item: int, enc: Encoding, max_len: int, stride: int, truncate: bool) -> list[Window]:
        """Split one encoding into windows of at most `max_len` tokens, specials included.

        Content tokens are those of the last sequence (the text, or the second text of a pair); the first text of
        a pair stays whole in every window. Consecutive windows overlap by `stride` content tokens.
        `truncate=True` keeps only the first window.
        """
        full = _Lists.of(enc, self.use_type_ids)
        if len(full.ids) <= max_len:
            return [full.window(item, 0, full.end - full.start)]
        room = full.room(item, max_len)
        step = max(1, room - min(stride, room - 1))
        total = full.end - full.start
        out = []
        for lo in range(0, total, step):
            hi = min(lo + room, total)
            out.append(full.window(item, lo, hi))
            if truncate or hi == total:
                break
        return out

    def window_around(self, item: int, enc: Encoding, max_len: int, position: int) -> Window:
        """The window of at most `max_len` tokens that has token `position` (of the full encoding) in its middle."""
        full = _Lists.of(enc, self.use_type_ids)
        if len(full.ids) <= max_len:
            return full.window(item, 0, full.end - full.start)
        room = full.room(item, max_len)
        lo = min(max(position - full.start - room // 2, 0), (full.end - full.start) - room)
        return full.window(item, lo, lo + room)

    # -- decoding ---------------------------------------------------------------------------------------------
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        return self.tok.id_to_token(token_id)

    def tokens_to_string(self, tokens: list[int] | list[str]) -> str:
        """Concatenate tokens (ids or token strings) the way HF's fast convert_tokens_to_string does: through the
        tokenizer's decoder (so WordPiece's cleanup turns "ms ." into "ms."), used for NER entity words."""
        pieces = [self.id_to_token(t) if isinstance(t, int) else t for t in tokens]
        if self.tok.decoder is not None:
            return self.tok.decoder.decode(pieces)
        return " ".join(pieces)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()


def _checked(texts: list[Text]) -> list[str | tuple[str, str]]:
    """The texts as the tokenizers library takes them (pairs as tuples); anything else -> InvalidInputError."""
    for i, t in enumerate(texts):
        ok = isinstance(t, str) or (isinstance(t, tuple | list) and len(t) == 2 and all(isinstance(s, str) for s in t))
        if not ok:
            raise InvalidInputError(f"input {i} must be a string or a (text, text) pair, got {type(t).__name__}")
    return [t if isinstance(t, str) else tuple(t) for t in texts]


@dataclass
class _Lists:
    """An Encoding's lists, read once: each attribute access on an Encoding copies the whole list, which made
    windowing quadratic in the input's length. Content tokens are [start, end)."""

    ids: list[int]
    types: list[int]
    offsets: list[tuple[int, int]]
    special: list[int]
    start: int
    end: int

    @classmethod
    def of(cls, enc: Encoding, use_type_ids: bool) -> _Lists:
        ids, seq_ids = enc.ids, enc.sequence_ids
        last_seq = max((s for s in seq_ids if s is not None), default=0)
        content = [i for i, s in enumerate(seq_ids) if s == last_seq]
        start, end = (content[0], content[-1] + 1) if content else (0, 0)
        types = enc.type_ids if use_type_ids else [0] * len(ids)
        return cls(ids, types, enc.offsets, enc.special_tokens_mask, start, end)

    def room(self, item: int, max_len: int) -> int:
        """Content tokens that fit in one window beside the fixed part (specials, first text of a pair)."""
        fixed = len(self.ids) - (self.end - self.start)
        if max_len - fixed < 1:
            raise InvalidInputError(
                f"input {item}: its first text ({fixed} tokens with specials) leaves no room for the "
                f"second within the model's {max_len} tokens"
            )
        return max_len - fixed

    def window(self, item: int, lo: int, hi: int) -> Window:
        """Fixed prefix + content tokens [lo, hi) + fixed suffix."""
        a, b, c, d = self.start, self.start + lo, self.start + hi, self.end

        def cut(values: list) -> list:
            return values[:a] + values[b:c] + values[d:]

        return Window(item, cut(self.ids), cut(self.types), cut(self.offsets), cut(self.special), lo, hi - lo)
