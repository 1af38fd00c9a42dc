"""Training checkpoints that resume exactly: HF-layout weights + tokenizer files + `trainer_state.pt`.

`trainer_state.pt` holds everything else a run's future depends on: optimizer and scheduler state, the step and
data cursor, the masking generator's state and the global RNG states (torch CPU, CUDA, numpy, python: dropout uses
torch's). It is written with plain tensors and tuples only, so it loads with `torch.load(weights_only=True)`.

A checkpoint is written into a hidden temporary directory and renamed into place, so a run killed mid-save (SIGKILL,
pre-emption) never leaves a half-written `checkpoint-N` that a resume would pick up.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model.checkpoint import save_model
from ..model.heads import TransformerModel

STATE_FILE = "trainer_state.pt"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json",
                   "special_tokens_map.json")
_NAME = re.compile(r"^checkpoint-(\d+)$")


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, dst / name)


def save_checkpoint(out: Path, step: int, model: TransformerModel, tokenizer_dir: Path, state: dict[str, Any],
                    keep: int) -> Path:
    """Write out/checkpoint-{step} atomically and prune all but the newest `keep` checkpoints (keep <= 0: all)."""
    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    copy_tokenizer(tokenizer_dir, tmp)
    torch.save(state, tmp / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if keep > 0:
        for old in list_checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints in `out`, oldest first."""
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _NAME.match(p.name)) and (p / STATE_FILE).exists()]
    return [p for _, p in sorted(found)]


def load_state(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
