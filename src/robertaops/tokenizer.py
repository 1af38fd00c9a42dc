"""Tokenizer: a thin wrapper over Hugging Face `tokenizers` (Rust) for single texts and pairs.

Loads `tokenizer.json` when the checkpoint has one, else builds the same tokenizer from vocab.json + merges.txt
(byte-level BPE, RoBERTa) or vocab.txt (WordPiece, BERT). The checkpoint's own truncation/padding settings are
switched off: the pipelines decide how long inputs are split (`windows`), never the tokenizer behind their back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

from .errors import CheckpointError, InvalidInputError

Text = str | tuple[str, str]


@dataclass
class Window:
    """A model-sized piece of one input: specials + a slice of its tokens.

    `item` is the index of the input it came from; `first` the index (in the input's full token list) of this
    window's first content token; `content` the number of content tokens it holds.
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
            tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
            tok.post_processor = RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
            return cls(tok, use_type_ids=use_type_ids)
        if (directory / "vocab.txt").exists():
            wp = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=bool(settings.get("do_lower_case", True)))
            return cls(wp._tokenizer, use_type_ids=use_type_ids)
        raise CheckpointError(
            f"no tokenizer in {directory}: expected tokenizer.json, vocab.json + merges.txt ({family}) or vocab.txt"
        )

    # -- encoding ---------------------------------------------------------------------------------------------
    def encode(self, texts: list[Text]) -> list[Encoding]:
        """Full encodings (specials added, nothing truncated). Texts are str or (a, b) pairs."""
        for i, t in enumerate(texts):
            ok = isinstance(t, str) or (
                isinstance(t, tuple | list) and len(t) == 2 and all(isinstance(s, str) for s in t)
            )
            if not ok:
                raise InvalidInputError(f"input {i} must be a string or a (text, text) pair, got {type(t).__name__}")
        return self.tok.encode_batch([tuple(t) if not isinstance(t, str) else t for t in texts])

    def ids(self, texts: list[Text]) -> list[list[int]]:
        return [e.ids for e in self.encode(texts)]

    def windows(self, item: int, enc: Encoding, max_len: int, stride: int, truncate: bool) -> list[Window]:
        """Split one encoding into windows of at most `max_len` tokens, specials included.

        Content tokens are those of the last sequence (the text, or the second text of a pair); the first text of
        a pair stays whole in every window. Consecutive windows overlap by `stride` content tokens.
        `truncate=True` keeps only the first window.
        """
        n = len(enc.ids)
        start, end = self._content_span(enc)
        if n <= max_len:
            return [Window(item, enc.ids, self._types(enc), enc.offsets, enc.special_tokens_mask, 0, end - start)]
        room = self._room(item, n, start, end, max_len)
        step = max(1, room - min(stride, room - 1))
        out = []
        for lo in range(0, end - start, step):
            hi = min(lo + room, end - start)
            out.append(self._slice(item, enc, start, end, lo, hi))
            if truncate or hi == end - start:
                break
        return out

    def window_around(self, item: int, enc: Encoding, max_len: int, position: int) -> Window:
        """The window of at most `max_len` tokens that has token `position` (of the full encoding) in its middle."""
        n = len(enc.ids)
        if n <= max_len:
            return self.windows(item, enc, max_len, 0, True)[0]
        start, end = self._content_span(enc)
        room = self._room(item, n, start, end, max_len)
        lo = min(max(position - start - room // 2, 0), (end - start) - room)
        return self._slice(item, enc, start, end, lo, lo + room)

    @staticmethod
    def _content_span(enc: Encoding) -> tuple[int, int]:
        """[start, end) of the tokens of the last sequence: the text, or the second text of a pair."""
        seq_ids = enc.sequence_ids
        last_seq = max((s for s in seq_ids if s is not None), default=0)
        content = [i for i, s in enumerate(seq_ids) if s == last_seq]
        return (content[0], content[-1] + 1) if content else (0, 0)

    @staticmethod
    def _room(item: int, n: int, start: int, end: int, max_len: int) -> int:
        """Content tokens that fit in one window beside the fixed part (specials, first text of a pair)."""
        room = max_len - (n - (end - start))
        if room < 1:
            raise InvalidInputError(
                f"input {item}: its first text ({n - (end - start)} tokens with specials) leaves no room for the "
                f"second within the model's {max_len} tokens"
            )
        return room

    def _slice(self, item: int, enc: Encoding, start: int, end: int, lo: int, hi: int) -> Window:
        keep = list(range(start)) + list(range(start + lo, start + hi)) + list(range(end, len(enc.ids)))
        types = self._types(enc)
        return Window(
            item, [enc.ids[i] for i in keep], [types[i] for i in keep], [enc.offsets[i] for i in keep],
            [enc.special_tokens_mask[i] for i in keep], lo, hi - lo,
        )

    def _types(self, enc: Encoding) -> list[int]:
        return enc.type_ids if self.use_type_ids else [0] * len(enc.ids)

    # -- decoding ---------------------------------------------------------------------------------------------
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        return self.tok.id_to_token(token_id)

    def tokens_to_string(self, token_ids: list[int]) -> str:
        """Concatenate tokens the way HF's convert_tokens_to_string does (used for NER entity words)."""
        if self.subword_prefix:
            text = " ".join(self.id_to_token(t) for t in token_ids)
            return text.replace(" " + self.subword_prefix, "").strip()
        return self.tok.decoder.decode([self.id_to_token(t) for t in token_ids])

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()
