"""Checkpoint manifests: sha256 and size of every weights, config and tokenizer file, in `manifest.json`.

A checkpoint is several files that only work together. The seed's "F2" incident was a tokenizer swapped for another
model's: the model loaded, ran, and answered garbage. `write_manifest` records what belongs together;
`verify_manifest` refuses a directory whose files differ from the record (naming the file), including a tokenizer or
weights file that was added after the manifest was written (a new tokenizer.json silently wins over vocab.json).
`check_vocab` catches the same mismatch without a manifest, from the model's config and the tokenizer alone.

Standard library only (the model layer may not import the tokenizer): callers pass the numbers they already have.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ManifestError, TokenizerMismatchError

MANIFEST = "manifest.json"
FORMAT = "robertaops-manifest/1"
# What a checkpoint is made of, by role. Anything else in the directory (metrics.json, README.md, plots) is
# documentation: it may change without changing what the model computes.
ROLES = {
    "config": ("config.json", "sentence_bert_config.json", "modules.json", "config_sentence_transformers.json",
               "1_Pooling/config.json"),
    "tokenizer": ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json",
                  "special_tokens_map.json", "sentencepiece.bpe.model", "spiece.model", "added_tokens.json"),
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".safetensors.index.json")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_files(directory: Path) -> dict[str, str]:
    """{relative path: role} for the files that make up the checkpoint in `directory`."""
    out: dict[str, str] = {}
    for role, names in ROLES.items():
        for name in names:
            if (directory / name).is_file():
                out[name] = role
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES):
            out[path.name] = "weights"
    return out


def write_manifest(directory: str | Path) -> dict[str, Any]:
    """Hash the checkpoint's files into directory/manifest.json (replacing an older one); return the manifest."""
    directory = Path(directory)
    files = checkpoint_files(directory)
    if not any(role == "weights" for role in files.values()) or "config.json" not in files:
        raise CheckpointError(f"{directory} has no config.json and weights file: nothing to write a manifest for")
    manifest = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": {name: {"role": role, "size": (directory / name).stat().st_size,
                         "sha256": sha256_file(directory / name)} for name, role in sorted(files.items())},
    }
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(directory / MANIFEST)  # atomic: a reader never sees half a manifest
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"),
                                                                                            dict):
        raise ManifestError(f"{path} is not a robertaops manifest (expected format {FORMAT!r})")
    return manifest


def verify_manifest(directory: str | Path, *, hashes: bool = True) -> dict[str, Any]:
    """Check every file against directory/manifest.json: present, same size and (hashes=True) same sha256, and no
    weights/config/tokenizer file added since. Raises ManifestError naming the first bad file; returns a summary."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise ManifestError(f"{directory} has no {MANIFEST}; write one with write_manifest() or `Model.save`")
    recorded = manifest["files"]
    for name, entry in recorded.items():
        path = directory / name
        role = entry.get("role", "file")
        if not path.is_file():
            raise ManifestError(f"{path}: {role} file listed in {MANIFEST} is missing")
        size = path.stat().st_size
        if size != entry["size"]:
            raise ManifestError(f"{path}: {role} file is {size} bytes, {MANIFEST} records {entry['size']}: "
                                "it changed after the manifest was written")
    added = sorted(set(checkpoint_files(directory)) - set(recorded))
    if added:
        role = checkpoint_files(directory)[added[0]]
        raise ManifestError(f"{directory / added[0]}: {role} file not in {MANIFEST}: added after the manifest was "
                            "written (a tokenizer.json wins over vocab files)")
    if hashes:
        for name, entry in recorded.items():
            digest = sha256_file(directory / name)
            if digest != entry["sha256"]:
                raise ManifestError(f"{directory / name}: {entry.get('role', 'file')} file sha256 {digest[:12]}... "
                                    f"differs from {MANIFEST}'s {entry['sha256'][:12]}...: it changed after the "
                                    "manifest was written")
    return {"directory": str(directory), "files": len(recorded), "hashes_checked": hashes,
            "created": manifest.get("created")}


def tokenizer_file(directory: Path) -> Path:
    """The file the tokenizer is read from (the same precedence as Tokenizer.from_dir): named in errors."""
    for name in ("tokenizer.json", "vocab.json", "vocab.txt"):
        if (directory / name).exists():
            return directory / name
    return directory / "tokenizer.json"


def check_vocab(directory: str | Path, *, config_vocab: int, tokenizer_vocab: int, config_pad: int | None,
                tokenizer_pad: int | None) -> None:
    """Refuse a tokenizer that cannot belong to this model: ids past the embedding table, or a different pad id.

    A tokenizer smaller than config.vocab_size is legal (embedding tables are often padded to a multiple of 8);
    a larger one would index past the table. Swapping BERT's and RoBERTa's tokenizers changes the pad id (0 vs 1)
    even where the sizes would pass."""
    directory = Path(directory)
    source = tokenizer_file(directory)
    if tokenizer_vocab > config_vocab:
        raise TokenizerMismatchError(
            f"{source}: the tokenizer has {tokenizer_vocab} tokens but {directory / 'config.json'} says "
            f"vocab_size={config_vocab}: these tokenizer files belong to another model")
    if config_pad is not None and tokenizer_pad is not None and config_pad != tokenizer_pad:
        raise TokenizerMismatchError(
            f"{source}: the tokenizer's pad token has id {tokenizer_pad} but {directory / 'config.json'} says "
            f"pad_token_id={config_pad}: these tokenizer files belong to another model")
