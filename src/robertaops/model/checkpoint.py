"""Hugging Face checkpoints in and out: one explicit key-mapping table, strict loading, HF-layout saving.

Reads model.safetensors, sharded safetensors (model.safetensors.index.json), or pytorch_model.bin through
`torch.load(weights_only=True)` so no pickled code ever runs. Keys are mapped through `KEY_MAP`; anything missing,
unexpected or of the wrong shape fails with one message that lists all of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .config import EncoderConfig
from .heads import POOLINGS, TransformerModel
from .quantize import METHOD, quantize_int8

# (our key, HF key, family or None = both, task or None = any). {i} is a layer index, {p} weight|bias.
# HF keys are shown without the base-model prefix ("roberta." / "bert."), which loading strips and saving adds.
KEY_MAP: list[tuple[str, str, str | None, str | None]] = [
    ("encoder.embeddings.word.weight", "embeddings.word_embeddings.weight", None, None),
    ("encoder.embeddings.position.weight", "embeddings.position_embeddings.weight", None, None),
    ("encoder.embeddings.token_type.weight", "embeddings.token_type_embeddings.weight", None, None),
    ("encoder.embeddings.norm.{p}", "embeddings.LayerNorm.{p}", None, None),
    ("encoder.layers.{i}.attn.query.{p}", "encoder.layer.{i}.attention.self.query.{p}", None, None),
    ("encoder.layers.{i}.attn.key.{p}", "encoder.layer.{i}.attention.self.key.{p}", None, None),
    ("encoder.layers.{i}.attn.value.{p}", "encoder.layer.{i}.attention.self.value.{p}", None, None),
    ("encoder.layers.{i}.attn.out.{p}", "encoder.layer.{i}.attention.output.dense.{p}", None, None),
    ("encoder.layers.{i}.attn_norm.{p}", "encoder.layer.{i}.attention.output.LayerNorm.{p}", None, None),
    ("encoder.layers.{i}.ffn_in.{p}", "encoder.layer.{i}.intermediate.dense.{p}", None, None),
    ("encoder.layers.{i}.ffn_out.{p}", "encoder.layer.{i}.output.dense.{p}", None, None),
    ("encoder.layers.{i}.ffn_norm.{p}", "encoder.layer.{i}.output.LayerNorm.{p}", None, None),
    ("pooler.dense.{p}", "pooler.dense.{p}", None, None),
    ("mlm.dense.{p}", "lm_head.dense.{p}", "roberta", "mlm"),
    ("mlm.norm.{p}", "lm_head.layer_norm.{p}", "roberta", "mlm"),
    ("mlm.bias", "lm_head.bias", "roberta", "mlm"),
    ("mlm.dense.{p}", "cls.predictions.transform.dense.{p}", "bert", "mlm"),
    ("mlm.norm.{p}", "cls.predictions.transform.LayerNorm.{p}", "bert", "mlm"),
    ("mlm.bias", "cls.predictions.bias", "bert", "mlm"),
    ("classifier.dense.{p}", "classifier.dense.{p}", "roberta", "sequence_classification"),
    ("classifier.out.{p}", "classifier.out_proj.{p}", "roberta", "sequence_classification"),
    ("classifier.out.{p}", "classifier.{p}", "bert", "sequence_classification"),
    ("classifier.out.{p}", "classifier.{p}", None, "token_classification"),
]
# HF keys we knowingly drop: buffers, the tied decoder (we tie it), duplicated biases, BERT's NSP head.
IGNORED = re.compile(
    r"(^|\.)position_ids$|^lm_head\.decoder\.|^cls\.predictions\.decoder\.|^cls\.seq_relationship\."
)
HEAD_PREFIXES = ("lm_head.", "cls.", "classifier.")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def _pattern(template: str) -> re.Pattern:
    # qweight / wscale / smooth: the int8 weights, their scales and input smoothing of a quantized checkpoint
    # (model/quantize.py)
    parts = r"(?P<p>weight|bias|qweight|wscale|smooth)"
    rx = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", parts)
    return re.compile(rx + "$")


_COMPILED = [(ours, hf, _pattern(hf), _pattern(ours), fam, task) for ours, hf, fam, task in KEY_MAP]


def _fill(template: str, m: re.Match) -> str:
    return template.format(**{k: v for k, v in m.groupdict().items() if v is not None})


def hf_to_ours(key: str, cfg: EncoderConfig) -> str | None:
    """Map one HF key to ours; None if it is knowingly ignored. Unknown keys come back unchanged (and fail)."""
    key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
    if IGNORED.search(key):
        return None
    if not key.startswith(HEAD_PREFIXES):
        for prefix in ("roberta.", "bert.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
    for ours, _hf, hf_rx, _ours_rx, fam, task in _COMPILED:
        if fam not in (None, cfg.family) or task not in (None, cfg.task):
            continue
        m = hf_rx.match(key)
        if m:
            return _fill(ours, m)
    return "<unmapped>" + key


def ours_to_hf(key: str, cfg: EncoderConfig) -> str:
    for _ours, hf, _hf_rx, ours_rx, fam, task in _COMPILED:
        if fam not in (None, cfg.family) or task not in (None, cfg.task):
            continue
        m = ours_rx.match(key)
        if m:
            name = _fill(hf, m)
            headed = cfg.task != "base" and not name.startswith(HEAD_PREFIXES)
            return (("roberta." if cfg.family == "roberta" else "bert.") + name) if headed else name
    raise KeyError(key)


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in `directory`, in whichever HF weight format it has."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".index.json"):
            shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
            tensors: dict[str, torch.Tensor] = {}
            for shard in shards:
                tensors.update(_read_one(directory / shard))
            return tensors
        return _read_one(path)
    raise CheckpointError(f"no weights in {directory}: expected one of {', '.join(WEIGHT_FILES)}")


def _read_one(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with code in it, truncated download...
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc


def build_model(directory: Path, cfg: EncoderConfig | None = None) -> TransformerModel:
    """Config + weights in `directory` -> a TransformerModel in eval mode (float32)."""
    raw = read_weights(directory)
    if cfg is None:
        cfg = EncoderConfig.from_file(directory / "config.json")
    has_pooler = any(k.endswith("pooler.dense.weight") for k in raw)
    cfg = cfg.with_(has_pooler=has_pooler)
    model = TransformerModel(cfg)
    method = (cfg.hf.get("quantization") or {}).get("method")
    if method is not None:
        if method != METHOD:
            raise CheckpointError(f"{directory}: quantization method {method!r} is not supported (only {METHOD!r})")
        quantize_int8(model, calibrate=False)  # int8 modules first, for the checkpoint's qweight/wscale
    load_state(model, raw, source=str(directory))
    return model.eval()


def load_state(model: TransformerModel, raw: dict[str, torch.Tensor], source: str) -> None:
    cfg = model.cfg
    mapped: dict[str, torch.Tensor] = {}
    source_key: dict[str, str] = {}  # our key -> the key as the checkpoint spells it, for error messages
    unexpected: list[str] = []
    for key, tensor in raw.items():
        ours = hf_to_ours(key, cfg)
        if ours is None:
            continue
        if ours.startswith("<unmapped>"):
            unexpected.append(key)
        else:
            mapped[ours] = tensor
            source_key[ours] = key
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("mlm.word_embeddings")}
    # Quantized checkpoints written before input smoothing have no `smooth`: their modules keep ones (none).
    missing = sorted(k for k in set(expected) - set(mapped) if not k.endswith(".smooth"))
    unexpected += sorted(source_key[k] for k in mapped if k not in expected)
    mismatched = [
        f"{source_key[k]}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in mapped and mapped[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"checkpoint {source} does not fit a {cfg.model_type} {cfg.task} model"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(ours_to_hf(k, cfg) for k in missing[:20])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:20])}")
        raise CheckpointError("\n  ".join(parts))
    state = {k: mapped[k] if mapped[k].dtype == torch.int8 else mapped[k].to(torch.float32) for k in expected
             if k in mapped}
    model.load_state_dict(state, strict=False)  # strict=False only for the tied decoder alias


def save_model(model: TransformerModel, directory: Path) -> None:
    """Write config.json + model.safetensors in HF layout (tied decoder omitted, as transformers does)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    tensors = {
        ours_to_hf(k, cfg): (v.detach() if v.dtype == torch.int8 else v.detach().to(torch.float32)).contiguous()
        for k, v in model.state_dict().items() if not k.startswith("mlm.word_embeddings")
    }
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(cfg.to_hf(), indent=2) + "\n")


@dataclass(frozen=True)
class SentenceTransformerInfo:
    """What a sentence-transformers folder says about embeddings; None fields mean 'not specified'."""

    pooling: str | None = None
    normalize: bool = False
    max_seq_length: int | None = None


def read_sentence_transformers(directory: Path) -> SentenceTransformerInfo:
    modules_file = directory / "modules.json"
    if not modules_file.exists():
        return SentenceTransformerInfo()
    try:
        modules = json.loads(modules_file.read_text())
        pooling = normalize = None
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith("Pooling"):
                pcfg = json.loads((directory / module["path"] / "config.json").read_text())
                for mode in POOLINGS:
                    key = "pooling_mode_cls_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"
                    if pcfg.get(key):
                        pooling = mode
                        break
                else:
                    pooling = pcfg.get("pooling_mode")
                if pooling not in POOLINGS:
                    raise CheckpointError(
                        f"{directory}: sentence-transformers pooling {pcfg!r} is not one of {POOLINGS}"
                    )
            elif kind.endswith("Normalize"):
                normalize = True
        max_len = None
        st_cfg = directory / "sentence_bert_config.json"
        if st_cfg.exists():
            max_len = json.loads(st_cfg.read_text()).get("max_seq_length")
        return SentenceTransformerInfo(pooling, bool(normalize), int(max_len) if max_len else None)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read sentence-transformers files in {directory}: {exc}") from exc
