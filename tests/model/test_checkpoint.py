"""Checkpoint loading and saving: strict errors, every HF weight format, the key map, and HF-loadable saves.

Checkpoints come from tests/conftest.py `make_checkpoint` (tiny random transformers models) and are then edited
on disk: a key removed, added or reshaped, the weights re-saved as .bin / shards / legacy gamma-beta names.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import robertaops as ro
from robertaops.model.checkpoint import IGNORED, KEY_MAP, hf_to_ours, ours_to_hf

TEXTS = ["A first sentence.", "And a second, rather longer one with more tokens in it.", ""]
FAMILIES = ["roberta", "bert", "xlm-roberta", "camembert"]
TASKS = ["base", "mlm", "sequence_classification", "token_classification"]


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_weights(directory: Path, edit) -> None:
    """Apply `edit(tensors)` to model.safetensors in place."""
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path), metadata={"format": "pt"})


def outputs(m: ro.Model) -> np.ndarray:
    """Everything a model computes for TEXTS, flattened: hidden states and the head's output."""
    encs = m.tokenizer.encode(TEXTS)
    parts = []
    with torch.inference_mode():
        for e in encs:
            ids = torch.tensor([e.ids])
            hidden = m.runner.model(ids, torch.ones_like(ids))  # (1, T, H)
            parts.append(hidden.flatten())
            if m.config.task == "mlm":
                parts.append(m.runner.model.mlm(hidden).flatten())
            elif m.config.task == "sequence_classification":
                parts.append(m.runner.model.sequence_logits(hidden).flatten())
            elif m.config.task == "token_classification":
                parts.append(m.runner.model.token_logits(hidden).flatten())
    return torch.cat(parts).numpy()


# -- strict loading -------------------------------------------------------------------------------------------
def test_missing_key_is_named_with_its_hf_name(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("roberta", "mlm")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    edit_weights(d, lambda t: t.pop("roberta.encoder.layer.1.attention.self.key.weight"))
    with pytest.raises(ro.CheckpointError) as err:
        ro.load(d)
    message = str(err.value)
    assert "missing keys (1)" in message
    assert "roberta.encoder.layer.1.attention.self.key.weight" in message
    assert "unexpected" not in message and "shape" not in message


def test_missing_bert_classifier_is_named(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("bert", "sequence_classification")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    edit_weights(d, lambda t: (t.pop("classifier.weight"), t.pop("bert.pooler.dense.bias")))
    with pytest.raises(ro.CheckpointError) as err:
        ro.load(d)
    assert "missing keys (2)" in str(err.value)
    assert "classifier.weight" in str(err.value) and "bert.pooler.dense.bias" in str(err.value)


def test_unexpected_keys_are_listed(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("roberta", "sequence_classification")
    d = copy_checkpoint(src, tmp_path / "ckpt")

    def add(t):
        t["roberta.encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(4)
        t["totally.unknown"] = torch.zeros(2)

    edit_weights(d, add)
    with pytest.raises(ro.CheckpointError) as err:
        ro.load(d)
    message = str(err.value)
    assert "unexpected keys (2)" in message and "missing" not in message
    assert "roberta.encoder.layer.0.attention.self.rotary.weight" in message and "totally.unknown" in message


def test_layers_beyond_the_config_are_unexpected_under_their_hf_names(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("roberta", "base")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 1
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ro.CheckpointError) as err:
        ro.load(d)
    message = str(err.value)
    assert "unexpected keys (16)" in message and "missing" not in message
    assert "encoder.layer.1.attention.self.query.weight" in message and "encoder.layers.1" not in message


def test_head_of_another_task_is_unexpected(make_checkpoint, tmp_path):
    """An MLM head inside a token-classification checkpoint is not silently dropped."""
    src, _ = make_checkpoint("roberta", "token_classification")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    edit_weights(d, lambda t: t.update({"lm_head.dense.weight": torch.zeros(32, 32)}))
    with pytest.raises(ro.CheckpointError, match=r"unexpected keys \(1\): lm_head\.dense\.weight"):
        ro.load(d)


def test_wrong_shape_lists_key_and_both_shapes(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("roberta", "sequence_classification")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    edit_weights(d, lambda t: t.update({"classifier.out_proj.weight": torch.zeros(5, 32)}))
    with pytest.raises(ro.CheckpointError) as err:
        ro.load(d)
    message = str(err.value)
    assert "shape mismatches (1)" in message
    assert "classifier.out_proj.weight" in message  # the name the user's file has
    assert "(5, 32)" in message and "(3, 32)" in message


def test_no_weights_file(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("roberta", "base")
    d = tmp_path / "ckpt"
    d.mkdir()
    shutil.copy(src / "config.json", d / "config.json")
    with pytest.raises(ro.CheckpointError, match=r"no weights in .*model\.safetensors.*pytorch_model\.bin"):
        ro.load(d)


def test_unknown_model_type_names_allowed_values(make_checkpoint, tmp_path):
    src, _ = make_checkpoint("roberta", "base")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ro.CheckpointError) as err:
        ro.load(d)
    message = str(err.value)
    assert "'gpt2'" in message
    for allowed in ("'roberta'", "'bert'", "'xlm-roberta'", "'camembert'"):
        assert allowed in message


# -- weight formats -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type,task", [("roberta", "sequence_classification"), ("bert", "mlm")])
def test_pytorch_bin_matches_safetensors(make_checkpoint, tmp_path, model_type, task):
    src, hf = make_checkpoint(model_type, task)
    d = copy_checkpoint(src, tmp_path / "ckpt")
    (d / "model.safetensors").unlink()
    torch.save(hf.state_dict(), d / "pytorch_model.bin")
    np.testing.assert_array_equal(outputs(ro.load(d)), outputs(ro.load(src)))


class Payload:
    """Unpickling this runs os.makedirs(marker): arbitrary code, which weights_only loading must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_pickled_object_in_bin_is_refused_without_running_it(make_checkpoint, tmp_path):
    src, hf = make_checkpoint("roberta", "base")
    d = copy_checkpoint(src, tmp_path / "ckpt")
    (d / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    torch.save({**hf.state_dict(), "payload": Payload(marker)}, d / "pytorch_model.bin")
    with pytest.raises(ro.CheckpointError, match="cannot read weights .*pytorch_model.bin"):
        ro.load(d)
    assert not marker.exists()
    # The payload is real: an unsafe load would have run it.
    torch.load(d / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_sharded_safetensors_load_identically(make_checkpoint, tmp_path):
    src, hf = make_checkpoint("roberta", "mlm")
    d = tmp_path / "sharded"
    hf.save_pretrained(d, max_shard_size="50KB")
    shutil.copy(src / "tokenizer.json", d / "tokenizer.json")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and not (d / "model.safetensors").exists()
    np.testing.assert_array_equal(outputs(ro.load(d)), outputs(ro.load(src)))


@pytest.mark.parametrize("model_type", ["roberta", "bert"])
def test_legacy_layernorm_gamma_beta_names_load(make_checkpoint, tmp_path, model_type):
    src, _ = make_checkpoint(model_type, "token_classification")
    d = copy_checkpoint(src, tmp_path / "ckpt")

    def rename(t):
        for key in [k for k in t if "LayerNorm." in k]:
            legacy = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            t[legacy] = t.pop(key)

    edit_weights(d, rename)
    assert any(k.endswith("LayerNorm.gamma") for k in load_file(str(d / "model.safetensors")))
    np.testing.assert_array_equal(outputs(ro.load(d)), outputs(ro.load(src)))


# -- saving ---------------------------------------------------------------------------------------------------
AUTO = {"mlm": "AutoModelForMaskedLM", "sequence_classification": "AutoModelForSequenceClassification",
        "token_classification": "AutoModelForTokenClassification"}


@pytest.mark.parametrize("task", list(AUTO))
@pytest.mark.parametrize("model_type", ["roberta", "bert"])
def test_save_round_trip_loads_in_robertaops_and_transformers(make_checkpoint, tmp_path, model_type, task):
    import transformers

    src, hf = make_checkpoint(model_type, task)
    m = ro.load(src)
    out = m.save(tmp_path / "saved")
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert (out / "tokenizer.json").exists()

    again = ro.load(out)
    assert again.config == m.config
    np.testing.assert_array_equal(outputs(again), outputs(m))
    assert again.tokenize(TEXTS) == m.tokenize(TEXTS)

    reloaded, info = getattr(transformers, AUTO[task]).from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(reloaded) is type(hf)
    ids = torch.tensor([m.tokenize(TEXTS[1])])
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.eval()(ids).logits, hf(ids).logits, atol=1e-6, rtol=0)


# -- model names ----------------------------------------------------------------------------------------------
def test_missing_directory_is_model_not_found(tmp_path):
    with pytest.raises(ro.ModelNotFoundError, match="does not exist"):
        ro.load(tmp_path / "no-such-model")


def test_unknown_hub_id_offline_is_model_not_found():
    with pytest.raises(ro.ModelNotFoundError, match="no-such-org/no-such-model"):
        ro.load("no-such-org/no-such-model")


def test_file_instead_of_directory_is_model_not_found(make_checkpoint):
    src, _ = make_checkpoint("roberta", "base")
    with pytest.raises(ro.ModelNotFoundError, match="is a file"):
        ro.load(src / "model.safetensors")


def test_directory_without_config_is_model_not_found(tmp_path):
    with pytest.raises(ro.ModelNotFoundError, match="no config.json"):
        ro.load(tmp_path)


# -- the key map ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model_type", FAMILIES)
def test_key_map_is_a_bijection_onto_hf_keys(make_checkpoint, model_type, task):
    src, hf = make_checkpoint(model_type, task)
    model = ro.load(src).runner.model
    cfg = model.cfg
    ours = [k for k in model.state_dict() if not k.startswith("mlm.word_embeddings")]  # tied alias
    theirs = [k for k in hf.state_dict() if hf_to_ours(k, cfg) is not None]
    assert all(IGNORED.search(k) is None for k in theirs)

    forward = {k: ours_to_hf(k, cfg) for k in ours}
    assert len(set(forward.values())) == len(ours)  # injective
    assert set(forward.values()) == set(theirs)  # onto exactly the keys transformers has
    assert all(hf_to_ours(h, cfg) == k for k, h in forward.items())  # and back
    assert all(ours_to_hf(hf_to_ours(h, cfg), cfg) == h for h in theirs)


def test_key_map_templates_are_unique_per_family_and_task():
    seen: dict = {}
    for ours, hf, family, task in KEY_MAP:
        for fam in [family] if family else ["roberta", "bert"]:
            for t in [task] if task else TASKS:
                assert seen.setdefault((fam, t, "ours", ours), hf) == hf, f"{ours} maps twice for {fam}/{t}"
                assert seen.setdefault((fam, t, "hf", hf), ours) == ours, f"{hf} maps twice for {fam}/{t}"


@pytest.mark.parametrize("task", ["mlm", "sequence_classification"])
def test_a_loaded_model_owns_its_weights(make_checkpoint, tmp_path, task):
    """The model holds copies of the checkpoint's tensors, not views of the file's mapped pages (safetensors maps
    the file): a checkpoint rewritten in place, say by a fine-tuning run saving into the directory being served,
    must not reach a model already loaded. Every tensor is trainable, and the MLM decoder stays tied."""
    from robertaops.model.checkpoint import build_model

    source, _ = make_checkpoint("roberta", task)
    directory = tmp_path / "ckpt"
    shutil.copytree(source, directory)
    model = build_model(directory)
    assert all(p.requires_grad for p in model.parameters())
    if task == "mlm":
        assert model.mlm.word_embeddings.weight is model.encoder.embeddings.word.weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weights = directory / "model.safetensors"
    changed = {k: v + 1.0 if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}
    save_file(changed, str(tmp_path / "new.safetensors"))
    with open(weights, "r+b") as f:  # the same file (inode), rewritten in place
        f.write((tmp_path / "new.safetensors").read_bytes())
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
