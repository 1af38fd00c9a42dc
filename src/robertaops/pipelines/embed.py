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
