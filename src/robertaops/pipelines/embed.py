"""Embeddings: pooled hidden states, long inputs as the token-count-weighted mean of their windows."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InvalidInputError, choices
from ..model.heads import POOLINGS, pool
from ..tokenizer import Text
from .runner import Runner, group_by_item


def embed(runner: Runner, texts: list[Text], *, pooling: str, normalize: bool, truncate: bool = False,
          stride: int | None = None) -> np.ndarray:
    """(n, H) float32. Windows are pooled separately, then averaged with weights = their token counts."""
    if pooling not in POOLINGS:
        raise InvalidInputError(f"unknown pooling {pooling!r}; choose {choices(POOLINGS)}")
    hidden_size = runner.cfg.hidden_size
    if not texts:
        return np.zeros((0, hidden_size), dtype=np.float32)
    windows = runner.windows(texts, truncate=truncate, stride=stride)

    def per_batch(hidden, batch):
        pooled = pool(hidden, batch.attention_mask, pooling).float().cpu().numpy()  # (B, H)
        return list(pooled)

    results = runner.run(windows, per_batch)
    out = np.empty((len(texts), hidden_size), dtype=np.float32)
    for item, parts in enumerate(group_by_item(windows, results, len(texts))):
        if len(parts) == 1:
            out[item] = parts[0][1]
        else:
            weights = np.array([len(w) for w, _ in parts], dtype=np.float64)
            stacked = np.stack([r for _, r in parts]).astype(np.float64)
            if pooling == "max":
                out[item] = stacked.max(0)  # the max over windows is the max over the whole text
            else:
                out[item] = (stacked * weights[:, None]).sum(0) / weights.sum()
    if normalize:
        out = torch.nn.functional.normalize(torch.from_numpy(out), dim=-1).numpy()
    return out


def embed_tokens(runner: Runner, texts: list[str], *, truncate: bool = False,
                 stride: int | None = None) -> list[np.ndarray]:
    """Per input, every token's last hidden state, specials included: a (T, H) float32 array (TEI's /embed_all).

    A long input is windowed like everywhere else; a token seen by several overlapping windows gets the mean of its
    hidden states, and the specials the mean over the windows' own specials, so the result has one row per token of
    the whole text (with `truncate`, of its first window)."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"input {i} must be a string, got {type(t).__name__}")
    if not texts:
        return []
    encodings = runner.tokenizer.encode(texts)
    windows = runner.split(encodings, truncate=truncate, stride=stride)

    def per_batch(hidden, batch):
        states = hidden.float().cpu().numpy()  # (B, T, H)
        return [states[row, : len(w)] for row, w in enumerate(batch.windows)]

    results = runner.run(windows, per_batch)
    out = []
    for item, parts in enumerate(group_by_item(windows, results, len(texts))):
        if len(parts) == 1:
            out.append(np.ascontiguousarray(parts[0][1]))
            continue
        n = len(encodings[item].ids)
        total = np.zeros((n, runner.cfg.hidden_size), dtype=np.float64)
        seen = np.zeros(n, dtype=np.int64)
        for w, states in parts:
            lead = w.special.index(0) if 0 in w.special else len(w)  # specials before the content
            for k in range(len(w)):
                if k < lead:
                    pos = k
                elif w.special[k]:
                    pos = n - (len(w) - k)  # trailing specials close the whole text
                else:
                    pos = k + w.first
                total[pos] += states[k]
                seen[pos] += 1
        out.append((total / np.maximum(seen, 1)[:, None]).astype(np.float32))
    return out


def embed_windows(runner: Runner, texts: list[str], *, pooling: str, normalize: bool, truncate: bool = False,
                  stride: int | None = None) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """One embedding per window (the pieces `embed` averages): (W, H) float32, the input each window came from
    (W,), and each window's character span [start, end) in its input. Search indexes these chunks separately,
    so a hit can name the part of a long document that matched."""
    if pooling not in POOLINGS:
        raise InvalidInputError(f"unknown pooling {pooling!r}; choose {choices(POOLINGS)}")
    if not texts:
        return np.zeros((0, runner.cfg.hidden_size), dtype=np.float32), np.zeros(0, dtype=np.int64), []
    windows = runner.windows(texts, truncate=truncate, stride=stride)
    results = runner.run(windows, lambda hidden, batch: list(pool(hidden, batch.attention_mask, pooling).float().cpu()
                                                              .numpy()))  # (B, H) per batch
    out = np.stack(results).astype(np.float32)  # (W, H)
    if normalize:
        out = torch.nn.functional.normalize(torch.from_numpy(out), dim=-1).numpy()
    items = np.array([w.item for w in windows], dtype=np.int64)
    spans = []
    for w in windows:
        real = [o for o, s in zip(w.offsets, w.special, strict=True) if not s and o[1] > o[0]]
        spans.append((real[0][0], real[-1][1]) if real else (0, 0))
    return out, items, spans
