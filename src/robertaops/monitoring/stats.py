"""Two-sample statistics for drift, in numpy: MMD with a permutation test, a domain classifier's AUC, PSI.

Each answers a different question. MMD's p-value: could both samples come from one distribution? (With thousands of
rows, trivial differences become significant, so it is paired with an effect size.) The domain classifier's AUC:
how well can a linear model tell reference from current inputs? 0.5 means not at all, 1.0 always; it is the effect
size. PSI: how much has a binned distribution (predicted labels, input lengths) moved? By convention < 0.1 is
stable, 0.1-0.25 a moderate shift, > 0.25 a significant one.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4  # floor for empty bins in PSI: log(0) otherwise


def _sq_dists(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(1)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)  # (N, N)


def mmd_test(a: np.ndarray, b: np.ndarray, permutations: int = 200, seed: int = 0) -> dict[str, float]:
    """Unbiased MMD² with an RBF kernel (bandwidth: the median pairwise distance of the pooled sample) and a
    permutation-test p-value ((1 + #{perm >= observed}) / (1 + permutations), never 0)."""
    x = np.concatenate([a, b]).astype(np.float64)  # (N, d)
    n = len(a)
    d2 = _sq_dists(x)
    median = np.median(d2[np.triu_indices(len(x), 1)])
    bandwidth = float(np.sqrt(median / 2.0)) if median > 0 else 1.0
    k = np.exp(-d2 / (2.0 * bandwidth**2))  # (N, N)
    np.fill_diagonal(k, 0.0)  # unbiased estimate: no self-similarity terms

    def stat(idx: np.ndarray) -> float:
        ia, ib = idx[:n], idx[n:]
        m1, m2 = len(ia), len(ib)
        kaa = k[np.ix_(ia, ia)].sum() / (m1 * (m1 - 1))
        kbb = k[np.ix_(ib, ib)].sum() / (m2 * (m2 - 1))
        kab = k[np.ix_(ia, ib)].sum() / (m1 * m2)
        return float(kaa + kbb - 2.0 * kab)

    rng = np.random.default_rng(seed)
    observed = stat(np.arange(len(x)))
    null = np.array([stat(rng.permutation(len(x))) for _ in range(permutations)])
    p = (1.0 + float((null >= observed).sum())) / (1.0 + permutations)
    return {"mmd2": observed, "p_value": p, "bandwidth": bandwidth, "null": null}


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve from the Mann-Whitney rank sum (ties get average ranks)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _logistic(x: np.ndarray, y: np.ndarray, l2: float, steps: int) -> np.ndarray:
    """L2-regularised logistic regression by full-batch gradient descent (features standardised, so a fixed step
    size converges); returns weights with the bias last."""
    xb = np.hstack([x, np.ones((len(x), 1))])  # (n, d+1)
    w = np.zeros(xb.shape[1])
    lr = 0.5
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0.0]
        w -= lr * grad
    return w


def domain_auc(a: np.ndarray, b: np.ndarray, folds: int = 5, seed: int = 0, l2: float = 1e-2,
               steps: int = 300) -> float:
    """Cross-validated AUC of a logistic regression telling `b` (current, label 1) from `a` (reference, label 0):
    every row is scored by a model that did not train on it."""
    x = np.concatenate([a, b]).astype(np.float64)
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    rng = np.random.default_rng(seed)
    fold = np.empty(len(x), dtype=int)
    for cls in (0, 1):  # stratified: each fold holds both classes in proportion
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % folds
    scores = np.empty(len(x))
    for f in range(folds):
        train, test = fold != f, fold == f
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-8
        w = _logistic((x[train] - mu) / sd, y[train], l2, steps)
        scores[test] = np.hstack([(x[test] - mu) / sd, np.ones((int(test.sum()), 1))]) @ w
    return auc(scores, y)


def psi(ref_fractions: np.ndarray, cur_fractions: np.ndarray) -> float:
    """Population stability index between two binned distributions (fractions summing to 1)."""
    p = np.maximum(np.asarray(ref_fractions, dtype=np.float64), EPS)
    q = np.maximum(np.asarray(cur_fractions, dtype=np.float64), EPS)
    return float(((q - p) * np.log(q / p)).sum())


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fractions of `values` in the bins (-inf, e1], (e1, e2], ..., (ek, inf) given interior edges."""
    idx = np.searchsorted(edges, values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def length_edges(lengths: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (deciles by default), duplicates dropped."""
    return np.unique(np.quantile(lengths, np.linspace(0, 1, bins + 1)[1:-1]))
