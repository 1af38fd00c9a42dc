"""Fine-tuning checkpoints: a base checkpoint with a fresh task head in, an HF-layout folder out.

Any base loads: an MLM checkpoint (its LM head is dropped), a plain encoder, a sentence-transformers folder (the
default model), or an already fine-tuned model (its head is kept only when the task and labels are the same).
New heads are initialised as transformers' `_init_weights` does: weights normal(0, 0.02), biases zero, so a head
trained here and one trained by HF start from the same distribution.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..model.checkpoint import hf_to_ours, read_sentence_transformers, read_weights, save_model
from ..model.config import EncoderConfig
from ..model.heads import TransformerModel
from ..model.manifest import write_manifest
from ..tokenizer import Tokenizer

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json",
                   "special_tokens_map.json")
# sentence-transformers' description of how to pool; kept for embedding models so `ro.load` pools the same way.
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
ST_DIRS = ("1_Pooling", "2_Normalize")


def init_model(directory: Path, task: str, id2label: tuple[str, ...] = (), problem_type: str | None = None,
               seed: int = 0) -> TransformerModel:
    """The base checkpoint in `directory` as a `task` model ("sequence_classification", "token_classification",
    "base"), with the encoder's weights loaded and the head either reused or freshly initialised."""
    base = EncoderConfig.from_file(directory / "config.json")
    raw = read_weights(directory)
    keep_head = base.task == task and tuple(base.id2label) == tuple(id2label)
    has_pooler = any(k.endswith("pooler.dense.weight") for k in raw)
    # A BERT sequence classifier needs its pooler (fresh if the base has none); RoBERTa and token heads use none.
    wants_pooler = base.family == "bert" and task == "sequence_classification"
    cfg = base.with_(task=task, id2label=tuple(id2label), problem_type=problem_type,
                     has_pooler=wants_pooler or (task == "base" and has_pooler))
    torch.manual_seed(seed)  # the fresh head's values depend on the seed only
    model = TransformerModel(cfg)
    for name, module in model.named_modules():
        if name.startswith(("classifier", "pooler")) and isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        ours = hf_to_ours(key, cfg)
        if ours is None or ours.startswith("<unmapped>"):
            continue  # the base's own head (lm_head, another classifier) or a buffer
        if ours.startswith("classifier.") and not keep_head:
            continue
        if ours.startswith("pooler.") and model.pooler is None:
            continue
        state[ours] = tensor.to(torch.float32)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("mlm.word_embeddings")}
    missing = [k for k in expected if k not in state and not k.startswith(("classifier.", "pooler."))]
    if missing:
        raise CheckpointError(f"{directory} is not an encoder checkpoint we can fine-tune: missing "
                              f"{', '.join(missing[:10])}")
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{directory}: shape mismatches: {'; '.join(wrong[:10])}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return model


def max_length_of(directory: Path, cfg: EncoderConfig, wanted: int | None) -> int:
    """Tokens per training row: the asked length, capped at what the model (and sentence-transformers) allows."""
    st = read_sentence_transformers(directory)
    limit = min(x for x in (cfg.max_tokens, st.max_seq_length) if x)
    return min(wanted, cfg.max_tokens) if wanted else limit


def load_tokenizer(directory: Path, cfg: EncoderConfig) -> Tokenizer:
    return Tokenizer.from_dir(directory, family=cfg.family, type_vocab_size=cfg.type_vocab_size)


def save_checkpoint(model: TransformerModel, source: Path, out: Path, *, temperature: float | None = None) -> None:
    """config.json + model.safetensors (+ temperature) + the base's tokenizer files; an embedding model also keeps
    the sentence-transformers pooling files so `ro.load` and sentence-transformers pool it as before."""
    cfg = model.cfg
    if temperature is not None:
        model.cfg = cfg.with_(hf={**cfg.hf, "temperature": float(temperature)})
    try:
        save_model(model, out)
    finally:
        model.cfg = cfg
    for name in TOKENIZER_FILES + (ST_FILES if cfg.task == "base" else ()):
        if (source / name).exists():
            shutil.copyfile(source / name, out / name)
    if cfg.task == "base":
        for name in ST_DIRS:
            if (source / name).is_dir():
                shutil.copytree(source / name, out / name, dirs_exist_ok=True)
    write_manifest(out)  # sha256 of weights, config and tokenizer: `ro.load` and `registry verify` check it
