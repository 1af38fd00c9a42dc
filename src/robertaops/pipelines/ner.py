"""Token classification (NER) with Hugging Face's aggregation strategies: none, simple, first, average, max.

Long inputs: windows overlap, and a token seen by several windows gets the mean of their logits, so entities
are merged across windows by position (and therefore by character offset) before any grouping happens.
Output matches transformers' token-classification pipeline: entity/entity_group, score, word, start, end.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, choices
from .classify import require_task
from .runner import Runner, group_by_item

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def ner(runner: Runner, texts: list[str], *, aggregation: str = "simple", ignore_labels=("O",),
        truncate: bool = False, stride: int | None = None) -> list[list[dict]]:
    require_task(runner, "token_classification", "NER")
    if aggregation not in AGGREGATIONS:
        raise InvalidInputError(f"unknown aggregation {aggregation!r}; choose {choices(AGGREGATIONS)}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"NER input {i} must be a string, got {type(t).__name__}")
    if not texts:
        return []
    encodings = runner.tokenizer.encode(texts)
    windows = runner.split(encodings, truncate=truncate, stride=stride)

    def per_batch(hidden, batch):
        logits = runner.model.token_logits(hidden).float().cpu().numpy()  # (B, T, L)
        return [logits[row, : len(w)] for row, w in enumerate(batch.windows)]

    results = runner.run(windows, per_batch)
    out = []
    for item, parts in enumerate(group_by_item(windows, results, len(texts))):
        enc = encodings[item]
        total = np.zeros((len(enc.ids), runner.cfg.num_labels), dtype=np.float64)
        seen = np.zeros(len(enc.ids), dtype=np.int64)
        for w, logits in parts:
            for k in range(len(w)):
                if not w.special[k]:
                    pos = k + w.first  # a window holds the content tokens from `first` on
                    total[pos] += logits[k]
                    seen[pos] += 1
        tokens = []
        ids, offsets = enc.ids, enc.offsets  # read once: each access copies the whole list
        for pos in np.flatnonzero(seen):
            logits = total[pos] / seen[pos]
            scores = np.exp(logits - logits.max())
            tokens.append(_pre_entity(runner, texts[item], ids, offsets, int(pos), scores / scores.sum()))
        out.append(_aggregate(runner, tokens, aggregation, set(ignore_labels or ())))
    return out


def _pre_entity(runner: Runner, text: str, ids: list[int], offsets: list, pos: int, scores: np.ndarray) -> dict:
    token_id = ids[pos]
    start, end = offsets[pos]
    piece = runner.tokenizer.id_to_token(token_id)
    if runner.tokenizer.subword_prefix:  # WordPiece marks continuations itself
        is_subword = len(piece) != len(text[start:end])
    else:  # byte-level BPE: a token is a continuation when no space precedes it (HF's heuristic)
        is_subword = start > 0 and " " not in text[start - 1 : start + 1]
    if token_id == runner.tokenizer.unk_id:  # HF reports the original text, not "[UNK]"
        piece, is_subword = text[start:end], False
    return {"word": piece, "scores": scores, "start": start, "end": end, "index": pos, "is_subword": is_subword}


def _aggregate(runner: Runner, tokens: list[dict], how: str, ignore: set[str]) -> list[dict]:
    labels = runner.cfg.id2label
    if how in ("none", "simple"):
        entities = [
            {"entity": labels[int(t["scores"].argmax())], "score": float(t["scores"].max()), "index": t["index"],
             "tokens": [t["word"]], "start": t["start"], "end": t["end"]}
            for t in tokens
        ]
    else:
        entities = [_word_entity(runner, word, how) for word in _words(tokens)]
    if how != "none":
        entities = _group(runner, entities)
    out = []
    for e in entities:
        if e.get("entity", e.get("entity_group")) in ignore:
            continue
        tokens = e.pop("tokens")
        # HF reports the raw token for "none" and the detokenized string for grouped entities.
        word = tokens[0] if how == "none" else runner.tokenizer.tokens_to_string(tokens)
        out.append({**e, "word": word})
    return out


def _words(tokens: list[dict]) -> list[list[dict]]:
    words: list[list[dict]] = []
    for t in tokens:
        if words and t["is_subword"]:
            words[-1].append(t)
        else:
            words.append([t])
    return words


def _word_entity(runner: Runner, word: list[dict], how: str) -> dict:
    labels = runner.cfg.id2label
    if how == "first":
        scores = word[0]["scores"]
    elif how == "max":
        scores = max(word, key=lambda t: t["scores"].max())["scores"]
    else:
        scores = np.nanmean(np.stack([t["scores"] for t in word]), axis=0)
    best = int(scores.argmax())
    return {"entity": labels[best], "score": float(scores[best]), "tokens": [t["word"] for t in word],
            "start": word[0]["start"], "end": word[-1]["end"]}


def _tag(label: str) -> tuple[str, str]:
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group(runner: Runner, entities: list[dict]) -> list[dict]:
    """Adjacent entities of the same type merge unless the next one starts with B- (HF's group_entities)."""
    groups: list[list[dict]] = []
    for e in entities:
        bi, tag = _tag(e["entity"])
        if groups and bi != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(e)
        else:
            groups.append([e])
    return [
        {"entity_group": g[0]["entity"].split("-", 1)[-1], "score": float(np.mean([e["score"] for e in g])),
         "tokens": [i for e in g for i in e["tokens"]], "start": g[0]["start"], "end": g[-1]["end"]}
        for g in groups
    ]
