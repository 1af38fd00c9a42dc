"""Offline drift: reference statistics from a text set, and a report comparing a current set against them.

`fit(texts, model)` keeps what later comparisons need: a sample of embeddings (MMD and the domain classifier work on
samples), their centroid and top principal components (a covariance summary), the input-length distribution in
tokens, and the predicted-label distribution when the model classifies. `compare(reference, texts, model)` returns
one JSON-able dict: the figures and a verdict.

Verdict rule: "drift" when the embedding distributions differ significantly (MMD permutation p < 0.01) and the
difference is large enough to matter (domain-classifier AUC >= 0.6), or when a PSI (labels, lengths) exceeds 0.25;
"warning" when only one embedding signal fires or a PSI is between 0.1 and 0.25; else "ok".
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, InvalidInputError
from .stats import binned, domain_auc, length_edges, mmd_test, psi

ALPHA, AUC_DRIFT, PSI_WARN, PSI_DRIFT = 0.01, 0.6, 0.1, 0.25
TEXT_COLUMNS = ("text", "sentence", "sentence1", "query", "content")


# -- reading text sets --------------------------------------------------------------------------------------------
def read_texts(path: str | Path, column: str | None = None, limit: int | None = None, seed: int = 0) -> list[str]:
    """Texts from .txt (one per line; CoNLL files, which start with -DOCSTART- or hold token-per-line rows, give one
    sentence per blank-line block), .csv/.tsv (header row; `column` or text/sentence) or .jsonl. `limit` keeps a
    reproducible random sample of that many."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE
                                    if suffix == ".tsv" else csv.QUOTE_MINIMAL)
            name = _column(path, reader.fieldnames or [], column)
            texts = [row[name] for row in reader if row.get(name)]
    elif suffix in (".jsonl", ".json"):
        texts = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
                texts.append(record if isinstance(record, str) else record.get(_column(path, list(record), column)))
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        first = next((x for x in lines if x.strip()), "")
        if first.startswith("-DOCSTART-"):
            texts = _conll(lines)
        else:
            texts = [x for x in lines if x.strip()]
    texts = [t.strip() for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise DataError(f"{path}: no texts")
    if limit and len(texts) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), limit, replace=False))
        texts = [texts[i] for i in keep]
    return texts


def _column(path: Path, names: list[str], wanted: str | None) -> str:
    if wanted:
        if wanted not in names:
            raise DataError(f"{path}: no column {wanted!r}; columns are {', '.join(map(repr, names))}")
        return wanted
    found = next((c for c in TEXT_COLUMNS if c in names), None)
    if found is None:
        raise DataError(f"{path}: no text column (looked for {', '.join(TEXT_COLUMNS)}); pass --text-column")
    return found


def _conll(lines: list[str]) -> list[str]:
    out, words = [], []
    for line in lines + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                out.append(" ".join(words))
            words = []
        else:
            words.append(line.split()[0])
    return out


# -- reference statistics -----------------------------------------------------------------------------------------
@dataclass
class Reference:
    embeddings: np.ndarray  # (n, d) float32, L2-normalised: the sample MMD / domain AUC compare against
    lengths: np.ndarray  # (n,) tokens per input
    labels: list[str] = field(default_factory=list)  # the model's label names; empty: not a classifier
    label_fractions: np.ndarray = field(default_factory=lambda: np.zeros(0))
    components: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (k, d) top principal directions
    variances: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (k,) variance along each
    meta: dict[str, Any] = field(default_factory=dict)  # model name, weights sha256, rows, source

    @property
    def centroid(self) -> np.ndarray:
        return self.embeddings.mean(0)

    @property
    def edges(self) -> np.ndarray:
        return length_edges(self.lengths)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, embeddings=self.embeddings, lengths=self.lengths, labels=np.array(self.labels),
                            label_fractions=self.label_fractions, components=self.components,
                            variances=self.variances, centroid=self.centroid,
                            meta=np.array(json.dumps(self.meta)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        try:
            z = np.load(path, allow_pickle=False)
            return cls(embeddings=z["embeddings"], lengths=z["lengths"], labels=[str(x) for x in z["labels"]],
                       label_fractions=z["label_fractions"], components=z["components"], variances=z["variances"],
                       meta=json.loads(str(z["meta"])))
        except (OSError, KeyError, ValueError) as exc:
            raise InvalidInputError(f"{path} is not a reference written by `robertaops drift fit`: {exc}") from None


def observe(model, texts: list[str]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """(embeddings (n, d) normalised, lengths in tokens (n,), predicted labels or None) for `texts`."""
    embeddings = np.asarray(model.embed(texts, normalize=True, truncate=True), dtype=np.float32)
    lengths = np.array([len(ids) for ids in model.tokenize(texts)], dtype=np.int64)
    labels = None
    if model.config.id2label and model.config.task == "sequence_classification":
        labels = [r[0]["label"] for r in model.classify(texts, top_k=1, truncate=True)]
    return embeddings, lengths, labels


def label_fractions(labels: list[str], names: list[str]) -> np.ndarray:
    counts = np.array([sum(1 for x in labels if x == n) for n in names], dtype=np.float64)
    return counts / max(len(labels), 1)


def fit(texts: list[str], model, components: int = 10, source: str | None = None) -> Reference:
    """Reference statistics for `texts` embedded by `model` (a robertaops Model)."""
    if len(texts) < 10:
        raise InvalidInputError(f"a reference needs at least 10 texts, got {len(texts)}")
    emb, lengths, labels = observe(model, texts)
    centred = emb - emb.mean(0)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    k = min(components, len(s))
    names = list(model.config.id2label) if labels is not None else []
    return Reference(embeddings=emb, lengths=lengths, labels=names,
                     label_fractions=label_fractions(labels, names) if labels is not None else np.zeros(0),
                     components=vt[:k].astype(np.float32), variances=(s[:k] ** 2 / max(len(emb) - 1, 1)),
                     meta={"model": model.name, "weights_sha256": model.weights_sha256, "rows": len(texts),
                           "source": source, "dimension": int(emb.shape[1])})


# -- comparing ------------------------------------------------------------------------------------------------------
def compare(ref: Reference, texts: list[str], model, permutations: int = 200, seed: int = 0,
            keep_samples: bool = False) -> dict[str, Any]:
    """The drift report between `ref` and `texts` (embedded by `model`, which must be the reference's model)."""
    if ref.meta.get("weights_sha256") and model.weights_sha256 and ref.meta["weights_sha256"] != model.weights_sha256:
        raise InvalidInputError(f"the reference was fitted with {ref.meta.get('model')!r} (weights sha256 "
                                f"{ref.meta['weights_sha256'][:12]}...) but the model given is {model.name!r}: "
                                "embeddings of different models cannot be compared; pass the reference's --model")
    if len(texts) < 10:
        raise InvalidInputError(f"the current set needs at least 10 texts, got {len(texts)}")
    emb, lengths, labels = observe(model, texts)
    a, b = ref.centroid, emb.mean(0)
    centroid_distance = float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    mmd = mmd_test(ref.embeddings, emb, permutations=permutations, seed=seed)
    dom_auc = domain_auc(ref.embeddings, emb, seed=seed)
    edges = ref.edges
    len_ref, len_cur = binned(ref.lengths, edges), binned(lengths, edges)
    out: dict[str, Any] = {
        "reference_rows": int(len(ref.embeddings)), "current_rows": len(texts),
        "centroid_cosine_distance": round(centroid_distance, 6),
        "mmd2": round(mmd["mmd2"], 6), "mmd_p_value": round(mmd["p_value"], 4), "mmd_permutations": permutations,
        "domain_auc": round(dom_auc, 4), "psi_lengths": round(psi(len_ref, len_cur), 4),
        "mean_length": {"reference": round(float(ref.lengths.mean()), 2), "current": round(float(lengths.mean()), 2)},
        "covariance": _covariance(ref, emb),
    }
    if ref.labels and labels is not None:
        cur_frac = label_fractions(labels, ref.labels)
        out["psi_labels"] = round(psi(ref.label_fractions, cur_frac), 4)
        out["label_distribution"] = {"labels": ref.labels, "reference": ref.label_fractions.round(4).tolist(),
                                     "current": cur_frac.round(4).tolist()}
    else:
        out["psi_labels"] = None  # the model does not classify: no label distribution to compare
    out.update(verdict(out))
    out["model"] = model.name
    if keep_samples:  # for the HTML report's plots; not JSON
        out["_samples"] = {"embeddings": emb, "lengths": lengths, "null": mmd["null"], "edges": edges}
    return out


def _covariance(ref: Reference, emb: np.ndarray) -> dict[str, float]:
    """How much of the current set's spread lies in the reference's top-k directions (a shape change shows as a
    lower fraction), and total variance of each."""
    if not len(ref.components):
        return {}
    centred = emb - emb.mean(0)
    total = float((centred**2).sum() / max(len(emb) - 1, 1))
    captured = float(((centred @ ref.components.T) ** 2).sum() / max(len(emb) - 1, 1))
    ref_total = float(((ref.embeddings - ref.centroid) ** 2).sum() / max(len(ref.embeddings) - 1, 1))
    return {"top_k": int(len(ref.components)), "reference_total_variance": round(ref_total, 5),
            "current_total_variance": round(total, 5),
            "reference_top_k_fraction": round(float(ref.variances.sum()) / ref_total, 4) if ref_total else 0.0,
            "current_top_k_fraction": round(captured / total, 4) if total else 0.0}


def verdict(figures: dict[str, Any]) -> dict[str, Any]:
    """'drift' | 'warning' | 'ok', and which signals fired (thresholds in the module docstring)."""
    signals = []
    significant = figures["mmd_p_value"] < ALPHA
    large = figures["domain_auc"] >= AUC_DRIFT
    if significant:
        signals.append(f"mmd_p_value < {ALPHA}")
    if large:
        signals.append(f"domain_auc >= {AUC_DRIFT}")
    psis = {k: figures.get(k) for k in ("psi_lengths", "psi_labels") if figures.get(k) is not None}
    signals += [f"{k} > {PSI_DRIFT}" for k, v in psis.items() if v > PSI_DRIFT]
    signals += [f"{k} > {PSI_WARN}" for k, v in psis.items() if PSI_WARN < v <= PSI_DRIFT]
    if (significant and large) or any(v > PSI_DRIFT for v in psis.values()):
        state = "drift"
    elif significant or large or any(v > PSI_WARN for v in psis.values()):
        state = "warning"
    else:
        state = "ok"
    return {"verdict": state, "drift": state == "drift", "signals": signals}
