"""Runner: tokenized windows -> model forward passes, packed by a token budget, results in input order.

Every pipeline goes through `Runner.run`. Windows are sorted by length and grouped so that each batch's padded
size (rows x longest row) stays within `max_batch_tokens`; similar lengths together means almost no compute on
padding, and a budget in tokens (not a row count) keeps memory flat whatever the lengths. Longest first, so a
budget too large for the machine fails on the first batch rather than the last.

The default budget depends on the device: on a CPU, small batches keep activations in cache and leave less
padding (measured with benchmarks/throughput.py on roberta-base: 2,048 tokens ran 1.35x faster than 16,384);
a GPU wants large batches to fill its cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


def group_by_item(windows: list[Window], results: list[Any], n_items: int) -> list[list[tuple[Window, Any]]]:
    """Per input, its (window, result) pairs in window order."""
    grouped: list[list[tuple[Window, Any]]] = [[] for _ in range(n_items)]
    for w, r in zip(windows, results, strict=True):
        grouped[w.item].append((w, r))
    return grouped
