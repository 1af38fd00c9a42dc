"""EncoderConfig: the frozen description of a RoBERTa/BERT-family encoder and its head.

Built from a Hugging Face `config.json`; everything the encoder needs is a typed field, and the original dict is
kept (`hf`) so that saving writes back exactly what was read plus our changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, choices

# model_type -> architecture family. XLM-R and CamemBERT are RoBERTa with another vocabulary.
FAMILIES = {"roberta": "roberta", "xlm-roberta": "roberta", "camembert": "roberta", "bert": "bert"}

# HF architecture-name suffix -> our task name.
TASKS = {
    "ForMaskedLM": "mlm",
    "ForSequenceClassification": "sequence_classification",
    "ForTokenClassification": "token_classification",
    "Model": "base",
    "ForPreTraining": "mlm",
}
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "tanh")


@dataclass(frozen=True)
class EncoderConfig:
    model_type: str = "roberta"
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    task: str = "base"
    id2label: tuple[str, ...] = ()
    problem_type: str | None = None
    has_pooler: bool = False
    hf: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def family(self) -> str:
        return FAMILIES[self.model_type]

    @property
    def position_offset(self) -> int:
        """RoBERTa numbers positions from pad_token_id + 1 (a fairseq legacy); BERT from 0."""
        return self.pad_token_id + 1 if self.family == "roberta" else 0

    @property
    def max_tokens(self) -> int:
        """Longest sequence (specials included) the position table allows."""
        return self.max_position_embeddings - self.position_offset

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def temperature(self) -> float:
        """Temperature scaling fitted at fine-tuning (config.json "temperature"); classifiers divide logits by it
        before softmax/sigmoid. transformers ignores the key, so raw logits stay comparable."""
        return float(self.hf.get("temperature") or 1.0)

    @property
    def resolved_problem_type(self) -> str:
        """HF's rule: explicit problem_type wins; one label means regression; else single-label."""
        if self.problem_type:
            return self.problem_type
        return "regression" if self.num_labels == 1 else "single_label_classification"

    @classmethod
    def from_hf(cls, hf: dict[str, Any], *, has_pooler: bool | None = None) -> EncoderConfig:
        model_type = hf.get("model_type", "")
        if model_type not in FAMILIES:
            raise CheckpointError(f"unsupported model_type {model_type!r}; supported: {choices(FAMILIES)}")
        task = "base"
        for arch in hf.get("architectures") or []:
            for suffix, name in TASKS.items():
                if arch.endswith(suffix):
                    task = name
                    break
        act = hf.get("hidden_act", "gelu")
        if act not in ACTIVATIONS:
            raise CheckpointError(f"unsupported hidden_act {act!r}; supported: {choices(ACTIVATIONS)}")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise CheckpointError(
                f"unsupported position_embedding_type {hf['position_embedding_type']!r}; supported: 'absolute'"
            )
        id2label: tuple[str, ...] = ()
        if task in ("sequence_classification", "token_classification"):
            raw = hf.get("id2label") or {i: f"LABEL_{i}" for i in range(int(hf.get("num_labels", 2)))}
            id2label = tuple(str(raw[k]) for k in sorted(raw, key=int))
        problem_type = hf.get("problem_type")
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise CheckpointError(f"unsupported problem_type {problem_type!r}; supported: {choices(PROBLEM_TYPES)}")
        default_eps = 1e-5 if FAMILIES[model_type] == "roberta" else 1e-12
        return cls(
            model_type=model_type,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(hf["num_attention_heads"]),
            intermediate_size=int(hf["intermediate_size"]),
            hidden_act=act,
            max_position_embeddings=int(hf["max_position_embeddings"]),
            type_vocab_size=int(hf.get("type_vocab_size", 2)),
            layer_norm_eps=float(hf.get("layer_norm_eps", default_eps)),
            pad_token_id=int(hf.get("pad_token_id", 1 if FAMILIES[model_type] == "roberta" else 0)),
            hidden_dropout_prob=float(hf.get("hidden_dropout_prob", 0.1)),
            attention_probs_dropout_prob=float(hf.get("attention_probs_dropout_prob", 0.1)),
            task=task,
            id2label=id2label,
            problem_type=problem_type,
            has_pooler=bool(has_pooler) if has_pooler is not None else False,
            hf=dict(hf),
        )

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> EncoderConfig:
        try:
            hf = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read model config {path}: {exc}") from exc
        try:
            return cls.from_hf(hf, **kwargs)
        except KeyError as exc:
            raise CheckpointError(f"{path} lacks the required field {exc.args[0]!r}") from exc

    def with_(self, **changes: Any) -> EncoderConfig:
        return replace(self, **changes)

    def to_hf(self) -> dict[str, Any]:
        """The config.json to write next to saved weights (HF-loadable)."""
        prefix = {"roberta": "Roberta", "xlm-roberta": "XLMRoberta", "camembert": "Camembert", "bert": "Bert"}
        suffix = {v: k for k, v in TASKS.items() if k != "ForPreTraining"}
        out = dict(self.hf)
        out.update(
            model_type=self.model_type,
            architectures=[prefix[self.model_type] + suffix[self.task]],
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
        )
        if self.id2label:
            out["id2label"] = {str(i): label for i, label in enumerate(self.id2label)}
            out["label2id"] = {label: i for i, label in enumerate(self.id2label)}
        if self.problem_type:
            out["problem_type"] = self.problem_type
        out.pop("dtype", None)
        out.pop("torch_dtype", None)
        return out
