"""The HTML drift report: the verdict, the figures, and four plots inlined as base64 PNGs (one self-contained file
to attach to a ticket): input lengths, both sets on the reference's top two principal components, the MMD
permutation null against the observed value, and the predicted-label distribution when the model classifies.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from .drift import Reference


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(ref: Reference, result: dict[str, Any]) -> list[tuple[str, str]]:
    """[(title, base64 PNG)] for the report."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    samples = result["_samples"]
    out = []
    fig, ax = plt.subplots(figsize=(6, 3.2))
    top = int(max(ref.lengths.max(), samples["lengths"].max()))
    bins = np.linspace(0, top + 1, 40)
    ax.hist(ref.lengths, bins=bins, alpha=0.55, density=True, label="reference")
    ax.hist(samples["lengths"], bins=bins, alpha=0.55, density=True, label="current")
    ax.set(xlabel="tokens per input", ylabel="density", title=f"lengths (PSI {result['psi_lengths']:.3f})")
    ax.legend()
    out.append(("Input lengths", _png(fig)))
    plt.close(fig)

    if len(ref.components) >= 2:
        fig, ax = plt.subplots(figsize=(6, 4))
        centre = ref.centroid
        for name, emb in (("reference", ref.embeddings), ("current", samples["embeddings"])):
            xy = (emb - centre) @ ref.components[:2].T  # (n, 2)
            ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, label=name)
        ax.set(xlabel="PC 1 (reference)", ylabel="PC 2 (reference)",
               title=f"embeddings (domain AUC {result['domain_auc']:.3f})")
        ax.legend()
        out.append(("Embeddings on the reference's principal components", _png(fig)))
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(samples["null"], bins=30, color="grey", alpha=0.7, label="permutations (no drift)")
    ax.axvline(result["mmd2"], color="red", label=f"observed (p={result['mmd_p_value']:.3g})")
    ax.set(xlabel="MMD²", ylabel="count", title="MMD permutation test")
    ax.legend()
    out.append(("MMD permutation test", _png(fig)))
    plt.close(fig)

    dist = result.get("label_distribution")
    if dist:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        x = np.arange(len(dist["labels"]))
        ax.bar(x - 0.2, dist["reference"], width=0.4, label="reference")
        ax.bar(x + 0.2, dist["current"], width=0.4, label="current")
        ax.set_xticks(x, dist["labels"], rotation=30)
        ax.set(ylabel="fraction", title=f"predicted labels (PSI {result['psi_labels']:.3f})")
        ax.legend()
        out.append(("Predicted labels", _png(fig)))
        plt.close(fig)
    return out


def write_html(path: str | Path, ref: Reference, result: dict[str, Any], title: str = "Drift report") -> Path:
    """One self-contained HTML file: verdict, a table of the figures, the plots, and the full JSON."""
    path = Path(path)
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    colour = {"ok": "#1a7f37", "warning": "#9a6700", "drift": "#cf222e"}[public["verdict"]]
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(json.dumps(v))}</td></tr>"
                   for k, v in public.items() if not isinstance(v, dict | list))
    plots = "".join(f"<h2>{html.escape(t)}</h2><img alt='{html.escape(t)}' src='data:image/png;base64,{png}'>"
                    for t, png in figures(ref, result))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:860px;margin:2em auto}}td{{padding:2px 10px;border-bottom:1px solid #ddd}}
.verdict{{font-size:1.6em;font-weight:bold;color:{colour}}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="verdict">verdict: {html.escape(public["verdict"])}</p>
<p>signals: {html.escape(", ".join(public["signals"]) or "none")}</p>
<p>reference: {html.escape(str(ref.meta.get("source")))} ({public["reference_rows"]} rows);
model: {html.escape(str(public.get("model")))}</p>
<table>{rows}</table>{plots}
<h2>JSON</h2><pre>{html.escape(json.dumps(public, indent=2))}</pre></body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
