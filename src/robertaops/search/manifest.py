"""The index directory: generations, the CURRENT pointer, the manifest, and the model fingerprint.

Layout of an index directory DIR:

    DIR/CURRENT           the name of the live generation, e.g. "gen-000003" (replaced atomically)
    DIR/gen-000003/       manifest.json, docs.sqlite, vectors.faiss, embeddings.npy, ids.npy, bm25/
    DIR/.lock             writers hold an exclusive flock on it (one writer at a time)

A write builds a new generation in a temporary folder, fsyncs it, renames it into place and only then swaps
CURRENT (write a temp file, fsync, rename: POSIX rename is atomic). A writer killed at any point leaves CURRENT
naming the previous, complete generation; readers never see a half-written index. The generation before the live
one is kept, so a reader that read CURRENT just before a swap can still open its files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import IndexNotFoundError, StaleIndexError

FORMAT = 1
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json")
CHECKED = ("weights_sha256", "tokenizer_sha256", "pooling", "dimension")  # what makes query vectors comparable


def tokenizer_sha256(path: Path) -> str:
    """sha256 over the tokenizer files the checkpoint has (name and bytes of each, in a fixed order)."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        if (path / name).exists():
            digest.update(name.encode() + b"\0" + (path / name).read_bytes())
    return digest.hexdigest()


def fingerprint(model, source: str | None) -> dict[str, Any]:
    """What the manifest records about the model: enough to reload it and to refuse a different one."""
    return {"name": model.name, "source": source, "weights_sha256": model.weights_sha256,
            "tokenizer_sha256": tokenizer_sha256(model.path), "pooling": model.pooling,
            "dimension": model.dimension, "max_length": model.max_length, "stride": model.runner.stride}


def check(manifest: dict[str, Any], model, index_dir: Path | str) -> None:
    """Refuse to query with a model whose vectors live in another space than the index's."""
    built = manifest["model"]
    asked = fingerprint(model, None)
    wrong = [k for k in CHECKED if built.get(k) != asked.get(k)]
    if wrong:
        def short(v):
            return v[:12] if isinstance(v, str) and len(v) == 64 else v

        diffs = "; ".join(f"{k}: index {short(built.get(k))!r}, model {short(asked.get(k))!r}" for k in wrong)
        raise StaleIndexError(
            f"index {str(index_dir)!r} was built with model {built['name']!r} and cannot be queried with "
            f"{model.name!r} ({diffs}): its embeddings are stale for this model. Query with the index's model, or "
            f"re-embed with `robertaops index rebuild --index {index_dir} --model {model.name}`")


def current(path: Path) -> Path:
    """The live generation's folder; IndexNotFoundError when DIR holds no index."""
    pointer = path / "CURRENT"
    if not path.is_dir() or not pointer.exists():
        raise IndexNotFoundError(f"no search index at {str(path)!r} (build one with `robertaops index build "
                                 f"--corpus FILE --index {path}`)")
    gen = path / pointer.read_text().strip()
    if not (gen / "manifest.json").exists():
        raise IndexNotFoundError(f"index {str(path)!r} is damaged: CURRENT names {gen.name!r}, which has no manifest")
    return gen


def read_manifest(gen: Path) -> dict[str, Any]:
    return json.loads((gen / "manifest.json").read_text())


def fsync_tree(folder: Path) -> None:
    """fsync every file under `folder` and the folders themselves: renamed into place, the data is on disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def point_to(path: Path, gen_name: str) -> None:
    """Make `gen_name` the live generation: one atomic rename of CURRENT."""
    tmp = path / f".CURRENT.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(gen_name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path / "CURRENT")
    fsync_dir(path)
