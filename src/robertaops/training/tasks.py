"""What differs between fine-tuning tasks: how rows become token ids and targets, the loss, and dev predictions.

Tasks: classify (single- or multi-label), pair (a classification of text pairs), regression (one output, MSE), ner
(token classification over CoNLL words) and embedding (multiple-negatives ranking loss over positive pairs: each
anchor must pick its own partner among every partner in the batch; sentence-transformers' recipe).

Texts are tokenized once, truncated to `max_length` with the `tokenizers` longest-first rule (what HF's tokenizer
does with truncation=True); batches pad only to their own longest row, and NER batches can instead be packed
(`packed_ner_batch`: sentences end to end in full rows, block-diagonal attention, no padding in between).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer as HFTokenizer

from ..model.heads import TransformerModel, pool
from ..pipelines.runner import plan_batches
from ..tokenizer import Tokenizer
from . import metrics as M
from .data import Example, Sentence, joined_words

PACK_WIDTH = 128  # tokens per packed row (NER training): long enough to hold several sentences, short enough that
# attention over the whole row stays cheap
IGNORE = -100  # target of sub-word tokens that carry no NER label (the first-subword strategy) and of specials
HEAD_TASK = {"classify": "sequence_classification", "pair": "sequence_classification",
             "regression": "sequence_classification", "ner": "token_classification", "embedding": "base"}
PRIMARY = {"classify": "accuracy", "pair": "accuracy", "regression": "spearman", "ner": "f1", "embedding": "spearman",
           "multi_label": "f1"}


@dataclass
class Encoded:
    """Token ids per row (and, for embedding, a second side), targets, and what evaluation needs to map back."""

    ids: list[list[int]]
    types: list[list[int]] | None
    targets: list  # per row: class id, list of multi-hot floats, float score, or per-token ids (NER)
    ids_b: list[list[int]] | None = None  # embedding: the partner texts
    words: list[list[int]] = field(default_factory=list)  # NER: per row, the first token position of each word
    gold: list = field(default_factory=list)  # NER: gold word tags; embedding: gold scores

    def __len__(self) -> int:
        return len(self.ids)

    def lengths(self) -> list[int]:
        if self.ids_b is None:
            return [len(x) for x in self.ids]
        return [max(len(a), len(b)) for a, b in zip(self.ids, self.ids_b, strict=True)]


def truncating(tokenizer: Tokenizer, max_length: int) -> HFTokenizer:
    """A copy of the tokenizer that truncates (the pipelines' own never does: they split into windows)."""
    tok = HFTokenizer.from_str(tokenizer.tok.to_str())
    tok.enable_truncation(max_length)
    return tok


def encode_rows(tokenizer: Tokenizer, rows: list[Example], max_length: int, kind: str,
                label2id: dict[str, int] | None) -> Encoded:
    """classify / pair / regression / multi-label rows -> ids and targets."""
    tok = truncating(tokenizer, max_length)
    encs = tok.encode_batch([r.text if r.pair is None else (r.text, r.pair) for r in rows])
    targets: list = []
    for r in rows:
        if kind == "score":
            targets.append(float(r.label))  # type: ignore[arg-type]
        elif kind == "multi":
            hot = [0.0] * len(label2id or {})
            for label in r.label:  # type: ignore[attr-defined]
                hot[label2id[label]] = 1.0  # type: ignore[index]
            targets.append(hot)
        else:
            targets.append(label2id[r.label])  # type: ignore[index]
    types = [e.type_ids for e in encs] if tokenizer.use_type_ids else None
    return Encoded([e.ids for e in encs], types, targets)


def encode_sentences(tokenizer: Tokenizer, rows: list[Sentence], max_length: int, label2id: dict[str, int],
                     strategy: str) -> Encoded:
    """CoNLL words -> ids of the words joined by spaces (the text the NER pipeline will see), labels per token.

    strategy 'first': the first sub-word of a word carries its tag, the others are ignored; 'all': every sub-word
    carries it, continuation pieces of a B-X word getting I-X (as transformers' run_ner does with label_all_tokens).
    """
    tok = truncating(tokenizer, max_length)
    texts, starts = joined_words(rows)
    encs = tok.encode_batch(texts)
    out = Encoded([], None, [], gold=[s.tags for s in rows])
    for s, enc, begin in zip(rows, encs, starts, strict=True):
        target = [IGNORE] * len(enc.ids)
        firsts = [-1] * len(s.words)
        for t, ((a, b), special) in enumerate(zip(enc.offsets, enc.special_tokens_mask, strict=True)):
            if special or b <= a:
                continue
            w = bisect.bisect_right(begin, a) - 1
            tag = s.tags[w]
            if firsts[w] < 0:
                firsts[w] = t
                target[t] = label2id[tag]
            elif strategy == "all":
                inside = "I-" + tag[2:] if tag.startswith("B-") else tag
                target[t] = label2id.get(inside, label2id[tag])
        out.ids.append(enc.ids)
        out.targets.append(target)
        out.words.append(firsts)
    return out


def encode_embedding(tokenizer: Tokenizer, rows: list[Example], max_length: int) -> Encoded:
    tok = truncating(tokenizer, max_length)
    a = [e.ids for e in tok.encode_batch([r.text for r in rows])]
    b = [e.ids for e in tok.encode_batch([r.pair or "" for r in rows])]
    gold = [float(r.label) if r.label is not None else float("nan") for r in rows]  # type: ignore[arg-type]
    return Encoded(a, None, [0] * len(rows), ids_b=b, gold=gold)


def pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest row: (B, T) ids and (B, T) attention mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def forward(model: TransformerModel, data: Encoded, index: list[int], task: str, pooling: str):
    """Model outputs for rows `index`: logits (B, L) / (B, T, L), or (B, H) x 2 embeddings for embedding."""
    pad_id = model.cfg.pad_token_id
    if task == "embedding":
        ids, mask = pad([data.ids[i] for i in index] + [data.ids_b[i] for i in index], pad_id)  # (2B, T)
        emb = pool(model(ids, mask), mask, pooling)  # (2B, H)
        return emb[: len(index)], emb[len(index):]
    ids, mask = pad([data.ids[i] for i in index], pad_id)
    types = pad([data.types[i] for i in index], 0)[0] if data.types is not None else None
    hidden = model(ids, mask, types)  # (B, T, H)
    return model.token_logits(hidden) if task == "ner" else model.sequence_logits(hidden)


def pack(lengths: list[int], width: int) -> list[list[int]]:
    """Positions into `lengths` grouped into rows of at most `width` tokens (first fit, longest first); a row
    longer than `width` gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = next((k for k, r in enumerate(room) if r >= lengths[i]), None)
        if k is None:
            rows.append([i])
            room.append(width - lengths[i])
        else:
            rows[k].append(i)
            room[k] -= lengths[i]
    return rows


def packed_ner_batch(data: Encoded, index: list[int], pad_id: int,
                     width: int = PACK_WIDTH) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NER rows `index` packed into full rows instead of padded: (R, W) ids, segment ids (0 = padding) and
    targets. The batch stays the random one; only the padding goes (CoNLL, random batches of 32: 62 % of a
    padded batch is padding, 10 % of a packed one)."""
    seqs = [data.ids[i] for i in index]
    groups = pack([len(x) for x in seqs], max(width, max(map(len, seqs))))
    w = max(sum(len(seqs[j]) for j in g) for g in groups)
    ids = torch.full((len(groups), w), pad_id, dtype=torch.long)
    segments = torch.zeros((len(groups), w), dtype=torch.long)
    target = torch.full((len(groups), w), IGNORE, dtype=torch.long)
    for r, group in enumerate(groups):
        at = 0
        for k, j in enumerate(group, start=1):
            n = len(seqs[j])
            ids[r, at: at + n] = torch.tensor(seqs[j])
            segments[r, at: at + n] = k
            target[r, at: at + n] = torch.tensor(data.targets[index[j]])
            at += n
    return ids, segments, target


def labelled_per_batch(data: Encoded, batch_size: int) -> float:
    """NER: the labelled tokens a batch of `batch_size` rows holds on average, the constant its loss is divided by.

    Dividing by each batch's own count instead weights every token by 1 / (its batch's tokens): with
    length-bucketed batches, tokens of short sentences then count several times more than those of long ones
    (which hold most entities). CoNLL, 250 steps: test F1 77.98 -> 78.68 (random batches 79.40), RESULTS.md."""
    labelled = sum(sum(1 for t in row if t != IGNORE) for row in data.targets)
    return max(1.0, labelled / max(1, len(data.targets)) * batch_size)


def loss(model: TransformerModel, data: Encoded, index: list[int], task: str, problem: str, pooling: str,
         scale: float = 20.0, token_norm: float | None = None, packed: bool = False) -> torch.Tensor:
    """The batch's training loss. NER with `token_norm`: summed over labelled tokens, divided by that constant;
    with `packed`, the batch's sentences run packed into full rows (same loss, no compute on padding)."""
    if task == "ner":
        if packed:
            ids, segments, target = packed_ner_batch(data, index, model.cfg.pad_token_id)
            logits = model.token_logits(model(ids, segment_ids=segments))  # (R, W, L)
        else:
            logits = forward(model, data, index, task, pooling)  # (B, T, L)
            target, _ = pad([data.targets[i] for i in index], IGNORE)  # (B, T)
        flat = (logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1))
        if token_norm is None:
            return F.cross_entropy(*flat, ignore_index=IGNORE)
        return F.cross_entropy(*flat, ignore_index=IGNORE, reduction="sum") / token_norm
    out = forward(model, data, index, task, pooling)
    if task == "embedding":
        a, b = (F.normalize(x.float(), dim=-1) for x in out)
        scores = a @ b.T * scale  # (B, B) scaled cosines; the diagonal holds each anchor's own partner
        return F.cross_entropy(scores, torch.arange(len(index)))
    logits = out.float()
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1), torch.tensor([data.targets[i] for i in index]))
    if problem == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, torch.tensor([data.targets[i] for i in index]))
    return F.cross_entropy(logits, torch.tensor([data.targets[i] for i in index]))


@torch.inference_mode()
def predict(model: TransformerModel, data: Encoded, task: str, pooling: str, batch_tokens: int = 4096,
            bf16: bool = False):
    """Outputs for every row, in order: a list of numpy arrays (logits), or (emb_a, emb_b) for embedding."""
    was_training = model.training
    model.eval()
    results: list = [None] * len(data)
    try:
        for group in plan_batches(data.lengths(), batch_tokens):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = forward(model, data, group, task, pooling)
            if task == "embedding":
                rows = list(zip(out[0].float().numpy(), out[1].float().numpy(), strict=True))
            else:
                rows = list(out.float().numpy())
            for i, r in zip(group, rows, strict=True):
                results[i] = r
    finally:
        model.train(was_training)
    return results


def score(task: str, problem: str, data: Encoded, outputs: list, id2label: tuple[str, ...],
          temperature: float = 1.0) -> dict[str, float]:
    """Dev/test metrics from model outputs (the same functions `robertaops evaluate` uses)."""
    if task == "embedding":
        a = np.stack([o[0] for o in outputs])
        b = np.stack([o[1] for o in outputs])
        return {"spearman": M.sts_spearman(a, b, data.gold)}
    if task == "ner":
        pred = []
        for logits, firsts in zip(outputs, data.words, strict=True):
            best = logits.argmax(-1)
            pred.append([id2label[best[t]] if t >= 0 else "O" for t in firsts])  # unreached words: O
        return M.entity_scores(data.gold, pred)
    logits = np.stack(outputs)
    if problem == "regression":
        y = logits[:, 0]
        return {"pearson": M.pearson(y, data.targets), "spearman": M.spearman(y, data.targets)}
    if problem == "multi_label_classification":
        return multi_label_scores(np.asarray(data.targets) > 0.5, logits > 0)
    return class_scores(task, np.asarray(data.targets), logits, id2label, temperature)


def class_scores(task: str, y: np.ndarray, logits: np.ndarray, id2label: tuple[str, ...],
                 temperature: float = 1.0) -> dict[str, float]:
    pred = logits.argmax(-1)
    out = {"accuracy": M.accuracy(y, pred), "macro_f1": M.macro_f1(y, pred)}
    if task == "pair" or len(id2label) == 2:
        positive = id2label.index("1") if "1" in id2label else len(id2label) - 1
        out["f1"] = M.binary_f1(y, pred, positive=positive)
    out["ece"] = M.ece(M.softmax(logits, temperature), y)
    return out


def multi_label_scores(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp, fp, fn = (gold & pred).sum(), (~gold & pred).sum(), (gold & ~pred).sum()
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {"f1": float(f1), "subset_accuracy": float((gold == pred).all(axis=1).mean())}
