"""Embeddings: pooled hidden states, long inputs as the token-count-weighted mean of their windows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import InvalidInputError, choices
from ..model.heads import POOLINGS, pool
from ..tokenizer import Text
from .runner import Runner, group_by_item

GPU_TOKENIZE_CHARS = 1_000_000  # characters per chunk tokenized ahead of a GPU (~250k tokens of English)


def embed(runner: Runner, texts: list[Text], *, pooling: str, normalize: bool, truncate: bool = False,
          stride: int | None = None) -> np.ndarray:
    """(n, H) float32. Windows are pooled separately, then averaged with weights = their token counts."""
    if pooling not in POOLINGS:
        raise InvalidInputError(f"unknown pooling {pooling!r}; choose {choices(POOLINGS)}")
    if not texts:
        return np.zeros((0, runner.cfg.hidden_size), dtype=np.float32)
    if all(isinstance(t, str) for t in texts):
        pooled, owners, lengths = _pool_texts(runner, texts, pooling, truncate, stride)
    else:  # pairs: windows keep the first text whole and carry token types
        windows = runner.windows(texts, truncate=truncate, stride=stride)
        pooled = np.stack(runner.run(windows, lambda hidden, batch: list(
            pool(hidden, batch.attention_mask, pooling).float().cpu().numpy())))  # (W, H)
        owners, lengths = [w.item for w in windows], [len(w) for w in windows]
    out = _combine(pooled, owners, lengths, len(texts), pooling)
    if normalize:
        out = torch.nn.functional.normalize(torch.from_numpy(out), dim=-1).numpy()
    return out


def _pool_texts(runner: Runner, texts: list[str], pooling: str, truncate: bool,
                stride: int | None) -> tuple[np.ndarray, list[int], list[int]]:
    """(W, H) pooled windows, the input of each, their token counts. On a GPU, large calls go in chunks and the next
    chunk is tokenized in a thread (the tokenizer releases the GIL) while the device runs this one: tokenizing is
    the host's largest cost, and would otherwise leave the GPU idle. On a CPU both would compete for the cores."""
    def reduce(hidden, mask):
        return pool(hidden, mask, pooling).float()  # (B, H)

    bounds = _chunks(runner, texts)
    if len(bounds) == 1:
        seqs, owners = _sequences(runner, texts, truncate, stride)
        return runner.forward_ids(seqs, reduce).numpy(), owners, [len(s) for s in seqs]
    parts, owners, lengths = [], [], []
    with ThreadPoolExecutor(1) as worker:
        ahead = worker.submit(_sequences, runner, texts[slice(*bounds[0])], truncate, stride)
        for k, (start, _) in enumerate(bounds):
            seqs, items = ahead.result()
            if k + 1 < len(bounds):
                ahead = worker.submit(_sequences, runner, texts[slice(*bounds[k + 1])], truncate, stride)
            parts.append(runner.forward_ids(seqs, reduce).numpy())
            owners += [start + i for i in items]
            lengths += [len(s) for s in seqs]
    return np.concatenate(parts), owners, lengths


def _chunks(runner: Runner, texts: list[str]) -> list[tuple[int, int]]:
    """[start, end) ranges of `texts` to tokenize one after another: one range on a CPU; on a GPU, ranges of about
    GPU_TOKENIZE_CHARS characters (sized in characters, not texts, so long texts overlap as well as short ones)."""
    if runner.device.type != "cuda":
        return [(0, len(texts))]
    bounds, start, size = [], 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= GPU_TOKENIZE_CHARS:
            bounds.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(texts):
        bounds.append((start, len(texts)))
    return bounds


def _sequences(runner: Runner, texts: list[str], truncate: bool,
               stride: int | None) -> tuple[list[list[int]], list[int]]:
    """One id list per window and the input each came from. Texts that fit take the offset-free tokenizer; only
    the long ones are re-encoded with offsets and cut into overlapping windows."""
    if stride is not None and stride < 0:
        raise InvalidInputError(f"stride must be >= 0, got {stride}")
    seqs = runner.tokenizer.ids_fast(texts)
    long = [i for i, s in enumerate(seqs) if len(s) > runner.max_length]
    if not long:
        return seqs, list(range(len(texts)))
    windows = runner.windows([texts[i] for i in long], truncate=truncate, stride=stride)
    is_long = set(long)
    kept = [i for i in range(len(texts)) if i not in is_long]
    return ([seqs[i] for i in kept] + [w.ids for w in windows],
            kept + [long[w.item] for w in windows])


def _combine(pooled: np.ndarray, owners: list[int], lengths: list[int], n: int, pooling: str) -> np.ndarray:
    """Per-window rows (W, H) -> per-input rows (n, H): a lone window is its input's row; several are averaged with
    weights = their token counts (max pooling: the max over windows is the max over the whole text)."""
    out = np.empty((n, pooled.shape[1]), dtype=np.float32)
    if len(owners) == n:  # every input one window: the common case, no per-input Python work
        out[np.asarray(owners)] = pooled
        return out
    parts: dict[int, list[int]] = {}
    for row, item in enumerate(owners):
        parts.setdefault(item, []).append(row)
    for item, rows in parts.items():
        if len(rows) == 1:
            out[item] = pooled[rows[0]]
        elif pooling == "max":
            out[item] = pooled[rows].max(0)
        else:
            weights = np.array([lengths[r] for r in rows], dtype=np.float64)
            out[item] = (pooled[rows].astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
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
