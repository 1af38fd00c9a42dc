"""Sequence classification (single-label, multi-label, regression; single texts or pairs).

Long inputs: the logits of all windows are averaged, then the model's activation applies once: softmax for
single-label, sigmoid for multi-label (`problem_type: multi_label_classification`), none for regression. Classifier
logits are divided by the config's `temperature` (temperature scaling fitted by `finetune`) before the activation;
`raw_scores=True` returns the logits as the model computes them.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, UnsupportedTaskError
from ..tokenizer import Text
from .runner import Runner, group_by_item


def require_task(runner: Runner, task: str, what: str) -> None:
    if runner.cfg.task != task:
        raise UnsupportedTaskError(
            f"{what} needs a {task} model; this checkpoint is a {runner.cfg.model_type} '{runner.cfg.task}' model"
        )


def logits(runner: Runner, texts: list[Text], *, truncate: bool = False, stride: int | None = None) -> np.ndarray:
    """(n, num_labels) float32 logits, window-averaged for long inputs."""
    require_task(runner, "sequence_classification", "classification")
    out = np.zeros((len(texts), runner.cfg.num_labels), dtype=np.float32)
    if not texts:
        return out
    windows = runner.windows(texts, truncate=truncate, stride=stride)

    def per_batch(hidden, batch):
        return list(runner.model.sequence_logits(hidden).float().cpu().numpy())  # (B, L)

    results = runner.run(windows, per_batch)
    for item, parts in enumerate(group_by_item(windows, results, len(texts))):
        out[item] = np.mean([r for _, r in parts], axis=0)
    return out


def activate(runner: Runner, raw: np.ndarray) -> np.ndarray:
    kind = runner.cfg.resolved_problem_type
    if kind == "regression":
        return raw
    raw = raw / runner.cfg.temperature  # calibration fitted by `finetune` (1.0 when absent)
    if kind == "multi_label_classification":
        return 1.0 / (1.0 + np.exp(-raw))
    shifted = np.exp(raw - raw.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def classify(runner: Runner, texts: list[Text], *, top_k: int | None = 1, raw_scores: bool = False,
             truncate: bool = False, stride: int | None = None) -> list[list[dict]]:
    """Per input, [{"label", "score"}] best first; top_k=None returns every label."""
    if top_k is not None and top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1 or None, got {top_k}")
    raw = logits(runner, texts, truncate=truncate, stride=stride)
    scores = raw if raw_scores else activate(runner, raw)
    labels = runner.cfg.id2label
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[: top_k or len(labels)]
        out.append([{"label": labels[j], "score": float(row[j])} for j in order])
    return out
