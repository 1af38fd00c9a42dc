"""Train a byte-level BPE tokenizer (RoBERTa's kind) on a corpus with HF `tokenizers`.

Writes tokenizer.json (with RoBERTa's `<s> … </s>` post-processor and the `<mask>` that swallows the space before
it, as in roberta-base's file), vocab.json + merges.txt (for tools that read those), and tokenizer_config.json.
The specials take ids 0-4 in RoBERTa's order `<s> <pad> </s> <unk> <mask>`, so pad = 1, bos = 0, eos = 2 as in
every RoBERTa config. Byte-level BPE has no unknown tokens: any UTF-8 text encodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import AddedToken
from tokenizers.implementations import ByteLevelBPETokenizer
from tokenizers.processors import RobertaProcessing

from ..errors import InvalidInputError
from .mlm_data import documents, list_files

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _paragraphs(files: list[Path], limit: int | None) -> Iterator[str]:
    n = 0
    for doc in documents(files):
        for para in doc:
            yield para
            n += 1
            if limit is not None and n >= limit:
                return


def train_tokenizer(data: str | Path, output: str | Path, vocab_size: int = 50265, min_frequency: int = 2,
                    max_paragraphs: int | None = None) -> dict:
    """Train on every paragraph of `data` (file or directory, as for pretraining); returns a small summary."""
    if vocab_size < len(SPECIALS) + 256:
        raise InvalidInputError(f"vocab_size must be at least {len(SPECIALS) + 256} (specials + 256 bytes), "
                                f"got {vocab_size}")
    files = list_files(data)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer(add_prefix_space=False, trim_offsets=True)
    bpe.train_from_iterator(_paragraphs(files, max_paragraphs), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=SPECIALS, show_progress=False)
    tok = bpe._tokenizer
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])  # "a <mask>" -> no lone "Ġ" token
    tok.post_processor = RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                           trim_offsets=True, add_prefix_space=False)
    ids = [tok.token_to_id(t) for t in SPECIALS]
    if ids != list(range(len(SPECIALS))):
        raise RuntimeError(f"special tokens got ids {ids}, expected 0..4")  # our configs assume RoBERTa's ids
    tok.save(str(out / "tokenizer.json"))
    bpe.save_model(str(out))  # vocab.json + merges.txt
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "RobertaTokenizer", "model_max_length": 512, "add_prefix_space": False,
         "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>", "cls_token": "<s>",
         "pad_token": "<pad>", "mask_token": "<mask>"}, indent=1) + "\n")
    return {"output": str(out), "vocab_size": tok.get_vocab_size(), "files": len(files)}
