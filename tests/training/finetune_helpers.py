"""Helpers shared by the fine-tuning tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

POSITIVE = ["great", "good", "lovely", "excellent", "superb", "wonderful"]
NEGATIVE = ["awful", "bad", "terrible", "poor", "dreadful", "horrible"]
NOUNS = ["film", "movie", "story", "cast", "plot", "ending"]


def sentiment_rows(offset: int = 0) -> list[tuple[str, str]]:
    """A trivially separable task: the adjective decides the label (pos / neg)."""
    rows = []
    for i, noun in enumerate(NOUNS):
        for j in range(len(POSITIVE)):
            rows.append((f"a {POSITIVE[(i + j + offset) % 6]} {noun}", "pos"))
            rows.append((f"a {NEGATIVE[(i + j + offset) % 6]} {noun}", "neg"))
    return rows


def write_tsv(path: Path, rows: list[tuple], header=("sentence", "label")) -> Path:
    lines = (["\t".join(header)] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def quick(**overrides):
    """TrainConfig for tiny models: large lr, small batches, no early stop unless asked."""
    from robertaops.training.loop import TrainConfig

    return TrainConfig(**{"epochs": 6, "batch_size": 8, "lr": 3e-3, "seed": 0, "patience": 0, **overrides})
