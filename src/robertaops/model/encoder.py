"""The RoBERTa / BERT encoder in one file.

RoBERTa (and XLM-R, CamemBERT) is BERT with positions numbered from pad_token_id + 1 and one token type; the
modules below serve both families. Post-LayerNorm Transformer blocks, exact GELU, attention through PyTorch's
scaled_dot_product_attention. Dropout modules exist for training and are no-ops in eval mode. A padded batch at
inference on a CPU runs unpadded (`Unpadded`): every layer's row-wise work sees its real tokens only.

Shapes: B batch, T tokens, H hidden, N heads, D head size (H = N * D), R real (unpadded) tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig
from .packed import PackedLinear

ACT_FNS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "tanh": torch.tanh,
}


# Unpadding copies the real tokens out and back (twice per layer): 1-3% of a forward pass when there is no padding
# to skip (measured on sorted batches, benchmarks/RESULTS.md). Below this share of padding the batch runs padded.
MIN_PADDING_TO_UNPAD = 0.05


class Unpadded:
    """Where the real tokens of a padded (B, T) batch sit, so that row-wise work (the Linears, LayerNorm, the
    activation) runs on those R tokens only, not on B * T: attention alone needs the padded layout.

    A server's batch holds whatever was queued together: inputs that differ by a few tokens leave ~10% padding,
    mixed lengths far more (one thread, benchmarks/unpadding.py: 1.08x and 1.33x faster, the same vectors)."""

    def __init__(self, index: torch.Tensor, batch: int, width: int):
        self.index, self.batch, self.width = index, batch, width  # index: (R,) flat positions in B * T

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> Unpadded | None:
        """Where the real tokens of a (B, T) mask sit, or None when too little of it is padding to repay the copies."""
        B, T = attention_mask.shape
        index = attention_mask.reshape(-1).nonzero().squeeze(1)
        return cls(index, B, T) if index.numel() <= (1 - MIN_PADDING_TO_UNPAD) * B * T else None

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (R, C): the real tokens' rows."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.index)

    def pad(self, *rows: torch.Tensor) -> torch.Tensor:
        """k tensors (R, C) -> one (B, T, k, C), zeros at padding (masked keys must hold finite values)."""
        out = rows[0].new_zeros(self.batch * self.width, len(rows), rows[0].shape[-1])
        for i, r in enumerate(rows):
            out[:, i].index_copy_(0, self.index, r)
        return out.view(self.batch, self.width, len(rows), -1)


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

    def forward(self, x, attn_bias, unpadded: Unpadded | None = None):
        """x (B, T, H), or (R, H) real tokens when `unpadded` says where they sit -> the same shape."""
        if unpadded is None:
            B, T, H = x.shape
            q = self.query(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)
            k = self.key(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)
            v = self.value(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, N, T, D)
        else:
            qkv = unpadded.pad(self.query(x), self.key(x), self.value(x))  # (B, T, 3, H)
            B, T, _, H = qkv.shape
            q, k, v = qkv.view(B, T, 3, self.n_heads, self.head_dim).transpose(1, 3).unbind(2)  # each (B, N, T, D)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.dropout_p if self.training else 0.0,
            scale=1.0 / math.sqrt(self.head_dim),
        ).transpose(1, 2).reshape(B, T, H)  # (B, T, H)
        return self.out(y if unpadded is None else unpadded.rows(y))  # (B, T, H) or (R, H)


class Layer(nn.Module):
    """One post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.ffn_out = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.hidden_act = cfg.hidden_act
        self.act = ACT_FNS[cfg.hidden_act]
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x, attn_bias, unpadded: Unpadded | None = None):
        x = self.attn_norm(x + self.dropout(self.attn(x, attn_bias, unpadded)))  # (B, T, H) or (R, H)
        return self.ffn_norm(x + self.dropout(self.ffn_out(self.ffn_hidden(x))))  # (B, T, H) or (R, H)

    def ffn_hidden(self, x):
        """act(ffn_in(x)): one oneDNN call where ffn_in is packed and can apply the activation itself."""
        if isinstance(self.ffn_in, PackedLinear):
            h = self.ffn_in.with_activation(x, self.hidden_act)
            if h is not None:
                return h
        return self.act(self.ffn_in(x))  # (B, T, I) or (R, I)


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
        unpadded = None
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
            on_cpu = input_ids.device.type == "cpu"
            if mask_given and (not on_cpu or not bool(attention_mask.all())):
                attn_bias = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T) True = attend
                if on_cpu and not self.training:  # (on a GPU, finding the real tokens would be a sync)
                    unpadded = Unpadded.of(attention_mask)
            if unpadded is not None:
                x = unpadded.rows(x)  # (R, H)
        for layer in self.layers:
            x = layer(x, attn_bias, unpadded)
        return x if unpadded is None else unpadded.pad(x)[:, :, 0]  # (B, T, H)


def packed_layout(segment_ids: torch.Tensor, position_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) segment ids -> positions restarting at each segment (B, T) and a block-diagonal attention mask
    (B, 1, T, T), True where query and key share a segment."""
    idx = torch.arange(segment_ids.shape[1], device=segment_ids.device).expand_as(segment_ids)  # (B, T)
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]  # (B, T) first token of each segment
    first = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # (B, T) its segment's start
    return idx - first + position_offset, segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
