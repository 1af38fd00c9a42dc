"""Checkpoint manifests: written by Model.save, verified by ro.load; a changed, missing or added file and a tokenizer
from another model (the F2 failure mode) are refused with an error naming the file."""

from __future__ import annotations

import json
import shutil

import pytest

import robertaops as ro
from robertaops.model.manifest import (
    MANIFEST,
    ManifestError,
    TokenizerMismatchError,
    sha256_file,
    verify_manifest,
    write_manifest,
)


@pytest.fixture
def saved(make_checkpoint, tmp_path):
    """A tiny classifier saved through Model.save (which writes the manifest)."""
    source = make_checkpoint("roberta", "sequence_classification")[0]
    return ro.load(source).save(tmp_path / "ckpt")


def test_save_writes_manifest_with_hashes_and_roles(saved):
    manifest = json.loads((saved / MANIFEST).read_text())
    files = manifest["files"]
    assert files["model.safetensors"]["role"] == "weights"
    assert files["config.json"]["role"] == "config"
    assert files["tokenizer.json"]["role"] == "tokenizer" and files["vocab.json"]["role"] == "tokenizer"
    assert files["model.safetensors"]["sha256"] == sha256_file(saved / "model.safetensors")
    assert files["merges.txt"]["size"] == (saved / "merges.txt").stat().st_size
    assert verify_manifest(saved)["files"] == len(files)


def test_load_refuses_changed_weights_naming_the_file(saved):
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF  # same size: only the hash can tell
    (saved / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.safetensors: weights file sha256"):
        ro.load(saved)
    assert ro.load(saved, verify=False).config.num_labels == 3  # the documented opt-out skips hashes only


def test_size_change_is_refused_even_without_hashes(saved):
    (saved / "tokenizer_config.json").write_text('{"model_max_length": 512, "extra": true}')
    with pytest.raises(ManifestError, match=r"tokenizer_config\.json: tokenizer file is \d+ bytes"):
        ro.load(saved, verify=False)


def test_missing_and_added_files_are_refused(saved, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(saved, other)
    (other / "merges.txt").unlink()
    with pytest.raises(ManifestError, match=r"merges\.txt: tokenizer file listed in manifest\.json is missing"):
        verify_manifest(other)
    (saved / "special_tokens_map.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"special_tokens_map\.json: tokenizer file not in manifest\.json"):
        verify_manifest(saved)


def test_swapped_tokenizer_from_another_model_is_refused_with_manifest(saved, default_model_dir):
    """F2: another model's tokenizer.json dropped into the checkpoint."""
    shutil.copy(default_model_dir / "tokenizer.json", saved / "tokenizer.json")
    with pytest.raises(ManifestError, match=r"tokenizer\.json"):
        ro.load(saved)


def test_swapped_tokenizer_is_refused_without_manifest(make_checkpoint, default_model_dir, tmp_path):
    """No manifest: BERT's WordPiece tokenizer in a RoBERTa checkpoint (pad id 0 vs 1), and RoBERTa's 50,265-token
    tokenizer in a BERT checkpoint (30,522 rows of embeddings) are both refused, naming tokenizer.json."""
    roberta = tmp_path / "roberta"
    shutil.copytree(make_checkpoint("roberta", "base")[0], roberta)
    shutil.copy(default_model_dir / "tokenizer.json", roberta / "tokenizer.json")
    with pytest.raises(TokenizerMismatchError, match=r"tokenizer\.json: the tokenizer's pad token has id 0 .* "
                                                     r"pad_token_id=1"):
        ro.load(roberta)
    bert = tmp_path / "bert"
    shutil.copytree(make_checkpoint("bert", "base")[0], bert)
    shutil.copy(make_checkpoint("roberta", "base")[0] / "tokenizer.json", bert / "tokenizer.json")
    with pytest.raises(TokenizerMismatchError, match=r"tokenizer\.json: the tokenizer has 50265 tokens .* "
                                                     r"vocab_size=30522"):
        ro.load(bert)


def test_rewritten_manifest_accepts_the_new_files(saved):
    (saved / "tokenizer_config.json").write_text('{"model_max_length": 128}')
    write_manifest(saved)
    assert ro.load(saved).config.num_labels == 3


def test_manifest_needs_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(Exception, match="no config.json and weights file"):
        write_manifest(tmp_path)
