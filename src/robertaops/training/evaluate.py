"""`robertaops evaluate`: the metrics of any checkpoint on a labelled file, computed through the engine's pipelines
(what `ro.load(...)` and the server run), so the numbers describe the model as it is served.

classify / pair: accuracy, macro-F1 (binary F1 with two classes), ECE over 15 bins with the stored temperature
applied (and `ece_uncalibrated`, at temperature 1); multi-label: micro-F1, subset accuracy; regression: Pearson,
Spearman; ner: entity precision/recall/F1 (exact spans, IOB1/IOB2 alike); embedding: STS Spearman of cosines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..api import load
from ..errors import DataError, InvalidInputError, UnsupportedTaskError, choices
from ..pipelines.classify import activate, logits
from . import metrics as M
from .data import check_labels, joined_words, read_conll, read_table
from .tasks import class_scores, multi_label_scores

TASKS = ("classify", "pair", "regression", "ner", "embedding")


def evaluate(model: str | None, task: str, data: str | Path, *, text_column: str = "text",
             pair_column: str | None = None, label_column: str = "label", fmt: str | None = None,
             header: bool | None = None, label_separator: str = ",", skip_bad_rows: bool = False,
             dtype: str = "float32", max_length: int | None = None, batch_tokens: int | None = None) -> dict:
    if task not in TASKS:
        raise InvalidInputError(f"unknown task {task!r}; choose {choices(TASKS)}")
    m = load(model, dtype=dtype, max_length=max_length, max_batch_tokens=batch_tokens)
    cfg = m.config
    path = Path(data)
    want = {"ner": "token_classification", "embedding": None}.get(task, "sequence_classification")
    if want and cfg.task != want:
        raise UnsupportedTaskError(f"evaluate --task {task} needs a {want} model; {m.name} is a '{cfg.task}' model")
    if task == "ner":
        loaded = read_conll(path, skip_bad_rows=skip_bad_rows)
        check_labels(loaded.rows, {label: i for i, label in enumerate(cfg.id2label)}, path)
        metrics = _ner(m, loaded.rows)
    else:
        if task in ("pair", "embedding") and not pair_column:
            raise InvalidInputError(f"evaluate --task {task} needs --text-pair-column")
        problem = cfg.resolved_problem_type if task != "embedding" else "regression"
        if task == "regression" and problem != "regression":
            raise UnsupportedTaskError(f"{m.name} is a {problem} model, not a regression model")
        kind = {"regression": "score", "multi_label_classification": "multi"}.get(problem, "class")
        loaded = read_table(path, text_column=text_column, pair_column=pair_column, label_column=label_column,
                            fmt=fmt, header=header, label_kind=kind, label_separator=label_separator,
                            skip_bad_rows=skip_bad_rows)
        rows = loaded.rows
        if task == "embedding":
            a = m.embed([r.text for r in rows])
            b = m.embed([r.pair for r in rows])
            metrics = {"spearman": M.sts_spearman(a, b, [r.label for r in rows])}
        else:
            texts = [r.text if r.pair is None else (r.text, r.pair) for r in rows]
            raw = logits(m.runner, texts)  # (n, L); long inputs window-averaged, as served
            metrics = _classes(m, task, problem, rows, raw, path)
    return {"task": task, "model": m.name, "data": str(path), "n": len(loaded.rows), "skipped_rows": loaded.skipped,
            "metrics": metrics}


def _classes(m, task: str, problem: str, rows: list, raw: np.ndarray, path: Path) -> dict[str, float]:
    cfg = m.config
    if problem == "regression":
        y = [r.label for r in rows]
        return {"pearson": M.pearson(raw[:, 0], y), "spearman": M.spearman(raw[:, 0], y)}
    label2id = {label: i for i, label in enumerate(cfg.id2label)}
    check_labels(rows, label2id, path)
    probs = activate(m.runner, raw)  # the pipeline's probabilities: temperature applied
    if problem == "multi_label_classification":
        gold = np.zeros(raw.shape, dtype=bool)
        for i, r in enumerate(rows):
            gold[i, [label2id[x] for x in r.label]] = True
        return multi_label_scores(gold, probs > 0.5)
    y = np.array([label2id[r.label] for r in rows])
    out = class_scores(task, y, raw, cfg.id2label)
    out["ece"] = M.ece(probs, y)
    out["ece_uncalibrated"] = M.ece(M.softmax(raw), y)
    out["temperature"] = cfg.temperature
    return out


def _ner(m, sentences: list) -> dict[str, float]:
    """Word tags from the NER pipeline (aggregation 'none': one entry per non-O token): a word takes the tag of
    the token that starts where the word starts (its first sub-word), else O."""
    texts, starts = joined_words(sentences)
    found = m.ner(texts, aggregation="none")
    pred = []
    for tokens, begin in zip(found, starts, strict=True):
        at = {t["start"]: t["entity"] for t in reversed(tokens)}  # the first token starting at a position wins
        pred.append([at.get(b, "O") for b in begin])
    if not sentences:
        raise DataError("no sentences to evaluate")
    return M.entity_scores([s.tags for s in sentences], pred)
