"""Writing an index: build, add (insert or update), delete, rebuild — each one atomic (see manifest.py).

Every write copies the live generation into a temporary folder, changes the copy, and publishes it with one rename
of CURRENT. Documents are embedded chunk by chunk with the engine's own windows (pipelines/embed.py
`embed_windows`), so a long document becomes several vectors and a hit can name its best chunk. Adds and updates
embed only the new documents; the FAISS index is updated in place where it can remove vectors (flat, IVF) and
rebuilt from the stored embeddings where it cannot (HNSW); BM25 is rebuilt from SQLite (no model involved).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DocumentNotFoundError, InvalidInputError
from ..pipelines.embed import embed_windows
from . import vectors
from .lexical import Lexical
from .manifest import FORMAT, check, current, fingerprint, fsync_tree, point_to, read_manifest
from .sources import Doc
from .store import Store


@contextmanager
def transaction(path: Path, *, fresh: bool = False):
    """Yield (new generation folder, previous manifest or None); publish it only if the block succeeds."""
    if not fresh:
        current(path)  # no index there: IndexNotFoundError before anything is created
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time, across processes
        old = current(path) if (path / "CURRENT").exists() else None
        for stale in path.glob(".tmp-*"):  # left by a writer that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = path / f".tmp-{uuid.uuid4().hex[:8]}"
        if old is not None and not fresh:
            shutil.copytree(old, tmp)
        else:
            tmp.mkdir()
        try:
            yield tmp, (read_manifest(old) if old is not None else None)
            number = int(old.name.split("-")[1]) + 1 if old is not None else 1
            gen = path / f"gen-{number:06d}"
            fsync_tree(tmp)
            os.rename(tmp, gen)
            point_to(path, gen.name)
            keep = {gen.name, old.name if old is not None else ""}
            for other in path.glob("gen-*"):
                if other.name not in keep:
                    shutil.rmtree(other, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


class _State:
    """One generation's writable parts, loaded from (or created in) the temporary folder."""

    def __init__(self, folder: Path, manifest: dict[str, Any], dimension: int):
        self.folder, self.manifest = folder, manifest
        self.store = Store(folder / "docs.sqlite")
        if (folder / "ids.npy").exists():
            self.ids = np.load(folder / "ids.npy")
            self.emb = _load_embeddings(folder)
            self.index = vectors.load(folder / "vectors.faiss")
        else:
            self.ids = np.zeros(0, dtype=np.int64)
            self.emb = np.zeros((0, dimension), dtype=np.float32)
            self.index = None
        self.dirty_index = self.index is None

    def remove(self, chunk_ids: list[int]) -> None:
        if not chunk_ids:
            return
        gone = np.array(chunk_ids, dtype=np.int64)
        keep = ~np.isin(self.ids, gone)
        self.ids, self.emb = self.ids[keep], self.emb[keep]
        if self.index is not None and vectors.can_remove(vectors.kind_of(self.index)) and not self.dirty_index:
            vectors.remove(self.index, gone)
        else:
            self.dirty_index = True

    def append(self, vecs: np.ndarray, chunk_ids: list[int]) -> None:
        ids = np.array(chunk_ids, dtype=np.int64)
        self.ids = np.concatenate([self.ids, ids])
        self.emb = np.concatenate([self.emb, vecs.astype(np.float32)])
        if self.index is not None and not self.dirty_index:
            vectors.add(self.index, vecs, ids)

    def save(self) -> None:
        info = self.manifest["index"]
        kind = vectors.choose(len(self.ids), info["requested"])
        if self.dirty_index or self.index is None or vectors.kind_of(self.index) != kind:
            self.index = vectors.build(self.emb, self.ids, kind, info["int8"])
        info["kind"] = kind
        self.store.commit()
        docs, chunks = self.store.count()
        self.manifest["counts"] = {"documents": docs, "chunks": chunks}
        vectors.save(self.index, self.folder / "vectors.faiss")
        np.save(self.folder / "ids.npy", self.ids)
        _save_embeddings(self.folder, self.emb, info["int8"])
        shutil.rmtree(self.folder / "bm25", ignore_errors=True)
        Lexical.build(self.store.all_docs()).save(self.folder / "bm25")
        self.store.close()
        self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (self.folder / "manifest.json").write_text(_dumps(self.manifest))


def _dumps(obj) -> str:
    import json

    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _save_embeddings(folder: Path, emb: np.ndarray, int8: bool) -> None:
    """float32, or int8 with one scale per row (max |value| / 127): 4x smaller, ~1e-3 relative error."""
    if not int8:
        np.save(folder / "embeddings.npy", emb.astype(np.float32))
        (folder / "scales.npy").unlink(missing_ok=True)
        return
    scales = np.maximum(np.abs(emb).max(axis=1) if len(emb) else np.zeros(0), 1e-12).astype(np.float32) / 127
    np.save(folder / "embeddings.npy", np.round(emb / scales[:, None]).astype(np.int8))
    np.save(folder / "scales.npy", scales)


def _load_embeddings(folder: Path, mmap: bool = False) -> np.ndarray:
    emb = np.load(folder / "embeddings.npy", mmap_mode="r" if mmap else None)
    if emb.dtype == np.int8:
        return emb.astype(np.float32) * np.load(folder / "scales.npy")[:, None]
    return emb


def _embed_docs(model, docs: list[Doc], truncate: bool) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    vecs, items, spans = embed_windows(model.runner, [d.content for d in docs], pooling=model.pooling,
                                       normalize=True, truncate=truncate)
    per_doc: list[list[tuple[int, int]]] = [[] for _ in docs]
    for item, span in zip(items.tolist(), spans, strict=True):
        per_doc[item].append(span)
    order = np.argsort(items, kind="stable")  # rows grouped per document, in document order, as the store assigns
    return vecs[order], per_doc


def _progress(total: int | None, progress: bool | None, desc: str):
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, unit="doc", desc=desc, file=sys.stderr, disable=not show)


def _insert(state: _State, batches: Iterable[list[Doc]], model, progress: bool | None, total: int | None,
            desc: str) -> tuple[int, int]:
    """Embed and insert documents; an id already present is replaced (an update). Returns (added, updated)."""
    added = updated = 0
    truncate = state.manifest["index"]["truncate"]
    with _progress(total, progress, desc) as bar:
        for batch in batches:
            unique = list({d.id: d for d in batch}.values())  # a repeated id within a batch: the last one wins
            existing = state.store.existing([d.id for d in unique])
            state.remove(state.store.delete(existing.values()))
            vecs, spans = _embed_docs(model, unique, truncate)
            state.append(vecs, state.store.add(unique, spans))
            added += len(unique) - len(existing)
            updated += len(existing)
            bar.update(len(batch))
    return added, updated


def _manifest(model, source: str | None, kind: str, int8: bool, truncate: bool) -> dict[str, Any]:
    vectors.choose(0, kind)  # validates the kind
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"format": FORMAT, "robertaops": dist_version("robertaops"), "created": now, "updated": now,
            "model": fingerprint(model, source),
            "index": {"requested": kind, "kind": None, "int8": int8, "truncate": truncate,
                      "dimension": model.dimension, "metric": "cosine"}}


def build(path: Path, batches: Iterable[list[Doc]], model, source: str | None, *, kind: str = "auto",
          int8: bool = False, truncate: bool = False, overwrite: bool = False, progress: bool | None = None,
          total: int | None = None) -> dict[str, Any]:
    """A new index from documents. An existing index is replaced only with overwrite=True."""
    if (path / "CURRENT").exists() and not overwrite:
        raise InvalidInputError(f"{str(path)!r} already holds an index; use `index add`, `index rebuild`, or "
                                "build with --overwrite")
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"index path {str(path)!r} is a file, not a directory")
    manifest = _manifest(model, source, kind, int8, truncate)
    with transaction(path, fresh=True) as (tmp, _):
        state = _State(tmp, manifest, model.dimension)
        added, _ = _insert(state, batches, model, progress, total, "embedding")
        state.save()
    return {"documents": manifest["counts"]["documents"], "chunks": manifest["counts"]["chunks"],
            "kind": manifest["index"]["kind"]}


def add(path: Path, batches: Iterable[list[Doc]], model, *, progress: bool | None = None,
        total: int | None = None) -> dict[str, Any]:
    """Insert new documents and replace those whose id exists; only these are embedded."""
    with transaction(path) as (tmp, manifest):
        check(manifest, model, path)
        state = _State(tmp, manifest, model.dimension)
        added, updated = _insert(state, batches, model, progress, total, "embedding")
        state.save()
    return {"added": added, "updated": updated, **manifest["counts"]}


def delete(path: Path, ids: list[str], *, missing_ok: bool = False) -> dict[str, Any]:
    """Remove documents by id; an unknown id is an error unless missing_ok."""
    with transaction(path) as (tmp, manifest):
        state = _State(tmp, manifest, manifest["index"]["dimension"])
        existing = state.store.existing(ids)
        unknown = [i for i in ids if i not in existing]
        if unknown and not missing_ok:
            shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DocumentNotFoundError(f"{len(unknown)} document id(s) not in the index: {shown}")
        state.remove(state.store.delete(existing.values()))
        state.save()
    return {"deleted": len(existing), **manifest["counts"]}


def rebuild(path: Path, model, source: str | None, *, kind: str | None = None, progress: bool | None = None
            ) -> dict[str, Any]:
    """Re-embed every document with `model` (a new model version, or a new index kind)."""
    old = read_manifest(current(path))
    gen = current(path)
    manifest = _manifest(model, source, kind or old["index"]["requested"], old["index"]["int8"],
                         old["index"]["truncate"])
    manifest["created"] = old["created"]
    reader = Store(gen / "docs.sqlite", readonly=True)

    def batches():
        import json

        last = -1
        while rows := reader.db.execute("SELECT id, ext_id, title, text, metadata FROM docs WHERE id > ? ORDER BY id "
                                        "LIMIT 1024", (last,)).fetchall():
            last = rows[-1][0]
            yield [Doc(r[1], r[3], r[2], json.loads(r[4])) for r in rows]

    total = reader.count()[0]
    try:
        with transaction(path, fresh=True) as (tmp, _):
            state = _State(tmp, manifest, model.dimension)
            _insert(state, batches(), model, progress, total, "re-embedding")
            state.save()
    finally:
        reader.close()
    return {"documents": manifest["counts"]["documents"], "chunks": manifest["counts"]["chunks"],
            "kind": manifest["index"]["kind"], "model": model.name}
