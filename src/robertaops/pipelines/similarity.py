"""Cosine similarity between two lists of texts, through the embed pipeline."""

from __future__ import annotations

import numpy as np

from ..tokenizer import Text
from .embed import embed
from .runner import Runner


def similarity(runner: Runner, a: list[Text], b: list[Text], *, pooling: str, truncate: bool = False) -> np.ndarray:
    """(len(a), len(b)) matrix of cosines; both sides embedded in one pass so they share batches."""
    vectors = embed(runner, list(a) + list(b), pooling=pooling, normalize=True, truncate=truncate)
    return vectors[: len(a)] @ vectors[len(a):].T
