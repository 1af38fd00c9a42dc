"""The RoBERTa / BERT encoder in one file.

RoBERTa (and XLM-R, CamemBERT) is BERT with positions numbered from pad_token_id + 1 and one token type; the
modules below serve both families. Post-LayerNorm Transformer blocks, exact GELU, attention through PyTorch's
scaled_dot_product_attention. Dropout modules exist for training and are no-ops in eval mode.

Shapes: B batch, T tokens, H hidden, N heads, D head size (H = N * D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig

ACT_FNS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
}


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.position_offset = cfg.position_offset

    def forward(self, input_ids, attention_mask, token_type_ids=None, positions=None):
        if positions is None:  # positions count real tokens only, so right padding never shifts them: (B, T)
            positions = torch.cumsum(attention_mask, dim=1) * attention_mask - 1 + self.position_offset
            positions = positions.clamp_min(0)
        x = self.word(input_ids) + self.position(positions)  # (B, T, H)
        if token_type_ids is None:
            x = x + self.token_type.weight[0]
        else:
            x = x + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not a multiple of {cfg.num_attention_heads} heads")
        self.n_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(self, x, attn_bias):
        B, T, H = x.shape
        q = self.query(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)
        k = self.key(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)
        v = self.value(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.dropout_p if self.training else 0.0,
            scale=1.0 / math.sqrt(self.head_dim),
        )  # (B, N, T, D)
        return self.out(y.transpose(1, 2).reshape(B, T, H))  # (B, T, H)


class Layer(nn.Module):
    """One post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.act = ACT_FNS[cfg.hidden_act]
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, attn_bias):
        x = self.attn_norm(x + self.dropout(self.attn(x, attn_bias)))  # (B, T, H)
        return self.ffn_norm(x + self.dropout(self.ffn_out(self.act(self.ffn_in(x)))))  # (B, T, H)


class Encoder(nn.Module):
    """Token ids -> contextual hidden states. The body shared by every head."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, segment_ids=None):
        """input_ids (B, T) long; attention_mask (B, T) 1 for real tokens, 0 for padding -> (B, T, H).

        segment_ids (B, T): several sequences packed in one row (training without padding): tokens attend only
        within their own segment and positions restart at each, so every sequence gets exactly the hidden states
        it would get alone. Padding is one more segment, with id 0 (never attended to by the others)."""
        if segment_ids is not None:
            positions, attn_bias = packed_layout(segment_ids, self.embeddings.position_offset)
            x = self.embeddings(input_ids, None, token_type_ids, positions)  # (B, T, H)
        else:
            # No mask given means no padding. A given mask is checked for padding on the CPU only: on a GPU that
            # check would be a device sync per forward, so callers that know a batch is unpadded pass None instead.
            mask_given = attention_mask is not None
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            attention_mask = attention_mask.to(input_ids.dtype)
            x = self.embeddings(input_ids, attention_mask, token_type_ids)  # (B, T, H)
            # A batch without padding needs no mask, which lets SDPA take its fastest kernel.
            attn_bias = None
            if mask_given and (input_ids.device.type != "cpu" or not bool(attention_mask.all())):
                attn_bias = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T) True = attend
        for layer in self.layers:
            x = layer(x, attn_bias)
        return x


def packed_layout(segment_ids: torch.Tensor, position_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) segment ids -> positions restarting at each segment (B, T) and a block-diagonal attention mask
    (B, 1, T, T), True where query and key share a segment."""
    idx = torch.arange(segment_ids.shape[1], device=segment_ids.device).expand_as(segment_ids)  # (B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]  # (B, T) first token of each segment
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, T) its segment's start
    return idx - first + position_offset, segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
