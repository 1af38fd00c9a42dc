"""Task heads on top of the encoder, and `TransformerModel`, the encoder plus whichever head its config names.

Heads follow Hugging Face exactly so that checkpoints load and outputs match:
- MLM: dense -> GELU -> LayerNorm -> decoder tied to the word embeddings (+ bias); computed only where asked.
- RoBERTa sequence classification: dense -> tanh -> out on the `<s>` token (no pooler).
- BERT sequence classification: pooler (dense -> tanh on `[CLS]`) -> out.
- Token classification (both families): one linear layer on every token.
Pooling for embeddings (cls / mean / max) lives here too, since it is a head without weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .encoder import ACT_FNS, Encoder

POOLINGS = ("cls", "mean", "max")


class MLMHead(nn.Module):
    def __init__(self, cfg: EncoderConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACT_FNS[cfg.hidden_act]
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.word_embeddings = word_embeddings  # tied decoder: logits = h @ E^T + bias

    def forward(self, hidden):
        h = self.norm(self.act(self.dense(hidden)))  # (..., H)
        return h @ self.word_embeddings.weight.T + self.bias  # (..., V)


class Pooler(nn.Module):
    """BERT's pooler: dense + tanh on the first token."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden):
        return torch.tanh(self.dense(hidden[:, 0]))  # (B, H)


class ClassificationHead(nn.Module):
    """RoBERTa: dense -> tanh -> out on <s>. BERT and token classification: `out` alone (dense is None)."""

    def __init__(self, cfg: EncoderConfig, with_dense: bool):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size) if with_dense else None
        self.dropout = nn.Dropout(cfg.hf.get("classifier_dropout") or cfg.hidden_dropout_prob)
        self.out = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, features):
        x = self.dropout(features)
        if self.dense is not None:
            x = self.dropout(torch.tanh(self.dense(x)))
        return self.out(x)


class TransformerModel(nn.Module):
    """Encoder + optional pooler + the head for `cfg.task`. State-dict keys are ours; checkpoint.py maps HF's."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        bert_cls = cfg.family == "bert" and cfg.task == "sequence_classification"
        self.pooler = Pooler(cfg) if (cfg.has_pooler or bert_cls) else None
        self.mlm = MLMHead(cfg, self.encoder.embeddings.word) if cfg.task == "mlm" else None
        self.classifier = None
        if cfg.task == "sequence_classification":
            self.classifier = ClassificationHead(cfg, with_dense=cfg.family == "roberta")
        elif cfg.task == "token_classification":
            self.classifier = ClassificationHead(cfg, with_dense=False)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, segment_ids=None):
        return self.encoder(input_ids, attention_mask, token_type_ids, segment_ids)  # (B, T, H)

    def sequence_logits(self, hidden):
        """(B, T, H) -> (B, num_labels) for sequence classification."""
        if self.pooler is not None and self.cfg.family == "bert":
            return self.classifier(self.pooler(hidden))
        return self.classifier(hidden[:, 0])

    def token_logits(self, hidden):
        """(B, T, H) -> (B, T, num_labels) for token classification."""
        return self.classifier(hidden)


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) hidden, (B, T) mask -> (B, H). Mean and max run over every non-pad token, specials included
    (what sentence-transformers does)."""
    if how == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if how == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    if how == "max":
        return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(1).values
    raise ValueError(f"unknown pooling {how!r}")
