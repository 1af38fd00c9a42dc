"""Temperature scaling (Guo et al. 2017): one scalar T that divides the logits, fitted on the dev set by
minimising the negative log-likelihood. Accuracy is unchanged (argmax is scale-invariant); confidences move
towards the observed accuracy. The classify pipeline applies `temperature` from config.json.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(logits: np.ndarray, targets: np.ndarray, multi_label: bool = False) -> float:
    """T > 0 minimising dev NLL of softmax(logits / T) (sigmoid for multi-label)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float64 if multi_label else torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # optimise log T: T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def nll():
        opt.zero_grad()
        scaled = z / log_t.exp()
        if multi_label:
            value = F.binary_cross_entropy_with_logits(scaled, y)
        else:
            value = F.cross_entropy(scaled, y)
        value.backward()
        return value

    opt.step(nll)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and t > 0 else 1.0
