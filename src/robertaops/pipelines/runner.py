"""Runner: tokenized windows -> model forward passes, packed by a token budget, results in input order.

Every pipeline goes through `Runner.run`. Windows are sorted by length and grouped so that each batch's padded
size (rows x longest row) stays within `max_batch_tokens`; similar lengths together means almost no compute on
padding, and a budget in tokens (not a row count) keeps memory flat whatever the lengths. Longest first, so a
budget too large for the machine fails on the first batch rather than the last.

The default budget depends on the device: on a CPU, small batches keep activations in cache and leave less
padding (measured with benchmarks/throughput.py on roberta-base: 2,048 tokens ran 1.35x faster than 16,384);
a GPU wants large batches to fill its cores.

`Runner.forward_ids` is the lean path for plain token-id sequences (embeddings of single texts, the bulk of the
traffic): collation is vectorised over one flat array instead of a Python loop per row, a batch without padding gets
no mask (so SDPA can take its fastest kernel), and results stay on the device until the end, so a GPU never idles
waiting for the host between batches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Encoding

from ..errors import InvalidInputError
from ..model.heads import TransformerModel
from ..tokenizer import Text, Tokenizer, Window

CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 16384


def default_batch_tokens(device: str | torch.device) -> int:
    return CPU_BATCH_TOKENS if torch.device(device).type == "cpu" else GPU_BATCH_TOKENS


@dataclass
class Batch:
    windows: list[Window]
    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor  # (B, T) long, 1 = real token
    token_type_ids: torch.Tensor | None  # (B, T) long, or None when the model has one token type


def plan_batches(lengths: Sequence[int], max_batch_tokens: int, max_batch_size: int | None = None) -> list[list[int]]:
    """Group indices so that len(group) * longest <= max_batch_tokens; longest groups first.

    A single item longer than the budget still gets a batch of its own (the budget bounds padding, not length).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        group = groups[-1] if groups else None
        # Sorted descending, so the group's first item is its longest.
        if group and (len(group) + 1) * lengths[group[0]] <= max_batch_tokens and (
            max_batch_size is None or len(group) < max_batch_size
        ):
            group.append(i)
        else:
            groups.append([i])
    return groups


def collate(windows: list[Window], pad_id: int, with_types: bool, device: torch.device) -> Batch:
    width = max(len(w) for w in windows)
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    types = torch.zeros((len(windows), width), dtype=torch.long) if with_types else None
    for row, w in enumerate(windows):
        ids[row, : len(w)] = torch.tensor(w.ids)
        mask[row, : len(w)] = 1
        if types is not None:
            types[row, : len(w)] = torch.tensor(w.type_ids)
    if device.type == "cuda":  # page-locked host memory lets the copy run asynchronously with the previous batch
        ids, mask = ids.pin_memory(), mask.pin_memory()
        types = types.pin_memory() if types is not None else None
    return Batch(windows, ids.to(device, non_blocking=True), mask.to(device, non_blocking=True),
                 types.to(device, non_blocking=True) if types is not None else None)


class Runner:
    """Holds the model and tokenizer; turns texts into windows and windows into per-window results."""

    def __init__(self, model: TransformerModel, tokenizer: Tokenizer, *, max_length: int, stride: int,
                 max_batch_tokens: int | None = None, device: str | torch.device = "cpu"):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride
        self.max_batch_tokens = max_batch_tokens or default_batch_tokens(device)
        self.device = torch.device(device)

    @property
    def cfg(self):
        return self.model.cfg

    def windows(self, texts: list[Text], *, truncate: bool = False, stride: int | None = None) -> list[Window]:
        """Tokenize and split every input; window.item points back at its input."""
        return self.split(self.tokenizer.encode(texts), truncate=truncate, stride=stride)

    def split(self, encodings: list[Encoding], *, truncate: bool = False, stride: int | None = None) -> list[Window]:
        stride = self.stride if stride is None else stride
        if stride < 0:
            raise InvalidInputError(f"stride must be >= 0, got {stride}")
        out: list[Window] = []
        for item, enc in enumerate(encodings):
            out.extend(self.tokenizer.windows(item, enc, self.max_length, stride, truncate))
        return out

    def run(self, windows: list[Window], per_batch: Callable[[torch.Tensor, Batch], list[Any]]) -> list[Any]:
        """Forward every window once; `per_batch(hidden (B, T, H), batch)` returns one result per row."""
        results: list[Any] = [None] * len(windows)
        if not windows:
            return results
        with_types = self.cfg.type_vocab_size > 1
        groups = plan_batches([len(w) for w in windows], self.max_batch_tokens)
        with torch.inference_mode():
            for group in groups:
                batch = collate([windows[i] for i in group], self.cfg.pad_token_id, with_types, self.device)
                hidden = self.model(batch.input_ids, batch.attention_mask, batch.token_type_ids)  # (B, T, H)
                for i, result in zip(group, per_batch(hidden, batch), strict=True):
                    results[i] = result
        return results

    def warm_up(self) -> None:
        """One forward pass per batch layout the encoder tells apart: one sequence; several of one length (no mask);
        several lengths with a little padding (run padded) and with a lot (run unpadded). What compiles per layout
        (the int8 layer, model/quantize.py) compiles now, not under the first request that brings that layout."""
        n, token = min(24, self.max_length), min(5, self.cfg.vocab_size - 1)
        for lengths in ([n], [n, n], [n, max(1, n - 1)], [n, max(1, n // 2)]):
            self.forward_ids([[token] * k for k in lengths], lambda hidden, mask: hidden[:, 0])

    def forward_ids(self, seqs: list[list[int]],
                    reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Token-id sequences (specials included, each within max_length, one token type) -> `reduce(hidden (B, T, H),
        mask (B, T))`'s (B, ...) rows, stacked in input order, on the CPU."""
        if not seqs:
            raise ValueError("forward_ids needs at least one sequence")
        lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))  # (S,)
        flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # (S,) where each sequence begins in `flat`
        pad, cuda = self.cfg.pad_token_id, self.device.type == "cuda"
        order, rows = [], []
        with torch.inference_mode():
            for group in plan_batches(lengths.tolist(), self.max_batch_tokens):
                g = np.asarray(group)
                n_tokens = lengths[g]  # (B,)
                width = int(n_tokens[0])  # plan_batches puts each group's longest first
                real = np.arange(width)[None, :] < n_tokens[:, None]  # (B, T)
                ids = np.where(real, flat[np.where(real, starts[g][:, None] + np.arange(width), 0)], pad)  # (B, T)
                ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(real.astype(np.int64))
                if cuda:  # page-locked host memory lets the copy run asynchronously with the previous batch
                    ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
                ids_t, mask_t = ids_t.to(self.device, non_blocking=True), mask_t.to(self.device, non_blocking=True)
                padded = bool(n_tokens[-1] < width)  # known here, so the encoder need not ask the device
                hidden = self.model(ids_t, mask_t if padded else None)  # (B, T, H)
                rows.append(reduce(hidden, mask_t))
                order.append(g)
            stacked = torch.cat(rows).cpu()  # the one host-device sync of the whole call
        out = torch.empty_like(stacked)
        out[torch.from_numpy(np.concatenate(order))] = stacked
        return out


def group_by_item(windows: list[Window], results: list[Any], n_items: int) -> list[list[tuple[Window, Any]]]:
    """Per input, its (window, result) pairs in window order."""
    grouped: list[list[tuple[Window, Any]]] = [[] for _ in range(n_items)]
    for w, r in zip(windows, results, strict=True):
        grouped[w.item].append((w, r))
    return grouped
