"""`robertaops quantize`: an int8 checkpoint of any model, with the accuracy it costs measured on a dev set.

The checkpoint holds the encoder's Linears as int8 weights + per-channel scales (model/quantize.py, W8A8 with
per-token activation scales at run time), everything else as before; `ro.load` and `robertaops serve` run it as
int8 whatever dtype is asked. With `task` and `data`, the same evaluation (training/evaluate.py, through the
serving pipelines) runs on the original and on the quantized model, and the result reports both and the deltas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..api import load
from ..model.quantize import METHOD
from ..resolve import resolve
from .evaluate import evaluate
from .model_io import save_checkpoint


def _weight_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.safetensors"))


def quantize_checkpoint(model: str | None, output: str | Path, *, task: str | None = None,
                        data: str | Path | None = None, **eval_options: Any) -> dict:
    """Write the int8 version of `model` to `output`; with `task` and `data`, evaluate both and report deltas."""
    source = resolve(model)
    out = Path(output)
    m = load(source, dtype="int8")
    net = m.runner.model
    cfg = net.cfg
    net.cfg = cfg.with_(hf={**cfg.hf, "quantization": {"method": METHOD}})
    try:
        save_checkpoint(net, source, out)
    finally:
        net.cfg = cfg
    result: dict[str, Any] = {"model": m.name, "output": str(out), "method": METHOD,
                              "weight_bytes_before": _weight_bytes(source), "weight_bytes_after": _weight_bytes(out)}
    if task is not None and data is not None:
        before = evaluate(str(source), task, data, **eval_options)["metrics"]
        after = evaluate(str(out), task, data, **eval_options)["metrics"]
        result.update(task=task, data=str(data), before=before, after=after,
                      delta={k: round(after[k] - v, 6) for k, v in before.items()
                             if isinstance(v, (int, float)) and isinstance(after.get(k), (int, float))})
    return result
