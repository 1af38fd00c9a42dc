"""Fill-mask: the most likely tokens for each mask, as transformers' fill-mask pipeline reports them.

The MLM head runs only at mask positions (a (masks, H) x (H, V) product, not (tokens, V)). A long input gets one
window per mask, centred on it. One mask per input gives a list of candidates; several give a list per mask
(transformers' convention, including keeping special tokens in `sequence` when there are several masks).
"""

from __future__ import annotations

from ..errors import InvalidInputError
from .classify import require_task
from .runner import Runner


def fill_mask(runner: Runner, texts: list[str], *, top_k: int = 5, truncate: bool = False) -> list[list]:
    require_task(runner, "mlm", "fill-mask")
    tok = runner.tokenizer
    if tok.mask_id is None:
        raise InvalidInputError("this tokenizer has no mask token, so fill-mask cannot run")
    if top_k < 1:
        raise InvalidInputError(f"top_k must be >= 1, got {top_k}")
    encodings = tok.encode(texts)
    windows = []
    # Per window, the masks it answers: (mask position in the full input, position in the window).
    asks: list[list[tuple[int, int]]] = []
    for item, enc in enumerate(encodings):
        masks = [i for i, t in enumerate(enc.ids) if t == tok.mask_id]
        if not masks:
            raise InvalidInputError(f"input {item} has no {tok.mask_token} token: {texts[item][:80]!r}")
        if len(enc.ids) <= runner.max_length:
            windows.append(tok.windows(item, enc, runner.max_length, 0, truncate=True)[0])
            asks.append([(m, m) for m in masks])
        elif truncate:
            window = tok.windows(item, enc, runner.max_length, 0, truncate=True)[0]
            inside = [(m, m) for m in masks if m < len(window) - 1]
            if not inside:
                raise InvalidInputError(f"input {item}: every mask lies beyond the first {runner.max_length} tokens")
            windows.append(window)
            asks.append(inside)
        else:
            for m in masks:
                window = tok.window_around(item, enc, runner.max_length, m)
                windows.append(window)
                asks.append([(m, m - window.first)])
    index = {id(w): k for k, w in enumerate(windows)}

    def per_batch(hidden, batch):
        results = []
        for row, window in enumerate(batch.windows):
            wanted = asks[index[id(window)]]
            h = hidden[row, [pos for _, pos in wanted]]  # (masks, H)
            probs = runner.model.mlm(h).float().softmax(-1)  # (masks, V)
            values, ids = probs.topk(min(top_k, probs.shape[-1]))
            results.append(list(zip(values.tolist(), ids.tolist(), strict=True)))
        return results

    answers = runner.run(windows, per_batch)
    per_item: list[list[tuple[int, list, list]]] = [[] for _ in texts]
    for window, wanted, answer in zip(windows, asks, answers, strict=True):
        for (m, _), (values, ids) in zip(wanted, answer, strict=True):
            per_item[window.item].append((m, values, ids))
    out: list[list] = []
    for item, found in enumerate(per_item):
        single = len(found) == 1
        rows = []
        for m, values, ids in sorted(found, key=lambda f: f[0]):
            full = list(encodings[item].ids)
            row = []
            for v, token in zip(values, ids, strict=True):
                full[m] = token
                row.append({"score": v, "token": token, "token_str": tok.decode([token], skip_special_tokens=False),
                            "sequence": tok.decode(full, skip_special_tokens=single)})
            rows.append(row)
        out.append(rows[0] if single else rows)
    return out



