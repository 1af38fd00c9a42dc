"""Embedding post-processing shared by /embed and /v1/embeddings: Matryoshka shortening and base64 encoding."""

from __future__ import annotations

import base64

import numpy as np

from ..errors import InvalidInputError


def check_dimensions(dimensions: int | None, size: int) -> int | None:
    """Validate a requested `dimensions` before any work is done (None = the model's full size)."""
    if dimensions is not None and not 1 <= dimensions <= size:
        raise InvalidInputError(f"dimensions must be between 1 and {size} for this model, got {dimensions}")
    return None if dimensions == size else dimensions


def shorten(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Keep the first `dimensions` columns and, when the output is normalized, re-normalize them."""
    if dimensions is None:
        return vectors
    out = np.ascontiguousarray(vectors[:, :dimensions], dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    return out.astype(np.float32, copy=False)


def to_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: what OpenAI sends for encoding_format="base64" (and its client decodes)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
