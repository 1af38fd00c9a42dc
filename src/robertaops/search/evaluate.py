"""Retrieval metrics as BEIR reports them (pytrec_eval's definitions): nDCG@10, Recall@100, MRR@10.

- nDCG@k: DCG with gain = relevance (linear, as trec_eval) and discount log2(rank + 1), over the ideal DCG of the
  query's judged documents. Only documents with relevance > 0 count as relevant for recall and MRR.
- Queries without judgements are skipped (BEIR evaluates only judged queries); a query with no results scores 0.
- As BEIR does, a document whose id equals the query's id is dropped from that query's results.
"""

from __future__ import annotations

import math


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if rels.get(d, 0) > 0), 0.0)


def evaluate(results: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """results: {query id: doc ids best first}. Returns the mean metrics over judged queries, and their count."""
    judged = [q for q in qrels if any(r > 0 for r in qrels[q].values())]
    if not judged:
        return {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "queries": 0}
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for q in judged:
        ranked = [d for d in results.get(q, []) if d != q]
        totals["ndcg@10"] += ndcg_at(ranked, qrels[q], 10)
        totals["recall@100"] += recall_at(ranked, qrels[q], 100)
        totals["mrr@10"] += mrr_at(ranked, qrels[q], 10)
    out: dict[str, float] = {k: round(v / len(judged), 5) for k, v in totals.items()}
    out["queries"] = len(judged)
    return out
