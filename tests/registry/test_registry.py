"""Registry: versions with lineage tags, copied artifacts, aliases (production moves archive the old one), manifest
verification, models:/ resolution, and the CLI's one-line errors."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from typer.testing import CliRunner

from robertaops.errors import InvalidInputError, RegistryNotFoundError
from robertaops.model.manifest import ManifestError, sha256_file


def test_register_records_lineage_and_copies(registry, finetuned):
    ckpt = finetuned(seed=0, accuracy=0.875)
    v = registry.register(ckpt, "lineage-clf", description="first")
    tags = v["tags"]
    data = ckpt.parent / "train-0.tsv"
    assert v["version"] == 1 and v["description"] == "first"
    assert tags["base_model"] == "roberta-tiny" and tags["task"] == "classify"
    assert tags["data.train"] == str(data)
    assert tags["data.train.sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert tags["param.learning_rate"] == "3e-05" and tags["param.epochs"] == "3"
    assert float(tags["metric.accuracy"]) == pytest.approx(0.875)
    assert re.fullmatch(r"[0-9a-f]{40}", tags["code.git_commit"])
    assert tags["weights_sha256"] == sha256_file(ckpt / "model.safetensors")
    assert tags["labels"] == "LABEL_0,LABEL_1,LABEL_2"
    assert tags["storage"] == "copy"
    path = registry.resolve("models:/lineage-clf/1")[0]
    assert path != ckpt and sha256_file(path / "model.safetensors") == tags["weights_sha256"]
    # the registration run holds the metrics and the full lineage record
    run = registry.client.get_run(v["run_id"])
    assert run.data.metrics["accuracy"] == pytest.approx(0.875)
    assert registry.register(finetuned(seed=1), "lineage-clf")["version"] == 2


def test_training_run_found_without_run_id(registry, finetuned):
    """metrics.json without a run id (as `robertaops finetune` writes it today): the run is the one whose logged
    metrics.json artifact is byte-identical."""
    ckpt = finetuned(seed=12, accuracy=0.7, run_id_in_metrics=False)
    finetuned(seed=13, accuracy=0.7, run_id_in_metrics=False)  # a decoy run with another metrics.json
    tags = registry.register(ckpt, "no-run-id")["tags"]
    assert tags["data.train"] == str(ckpt.parent / "train-12.tsv") and tags["param.output"] == str(ckpt)
    runs = registry.client.search_runs([registry.client.get_experiment_by_name("robertaops-finetune").experiment_id],
                                       filter_string=f"params.output = '{ckpt}'")
    assert tags["training_run_id"] == runs[0].info.run_id


def test_copied_version_is_immutable(registry, finetuned):
    ckpt = finetuned(seed=2)
    registry.register(ckpt, "immutable")
    (ckpt / "model.safetensors").write_bytes(b"overwritten by a later fine-tune")
    assert registry.verify("immutable", 1)["ok"] is True


def test_promote_moves_aliases_and_archives_old_production(registry, finetuned):
    for seed in (3, 4):
        registry.register(finetuned(seed=seed), "promo")
    first = registry.promote("promo", 1, "production")
    assert first == {"name": "promo", "alias": "production", "version": 1, "previous": None, "archived": None}
    second = registry.promote("promo", 2, "production")
    assert second["previous"] == 1 and second["archived"] == 1
    assert registry.aliases("promo") == {"production": 2, "archived": 1}
    path, info = registry.resolve("models:/promo@production")
    assert info["version"] == 2 and path == registry.local_path(registry.version("promo", 2))
    assert [m for m in registry.models() if m["name"] == "promo"][0]["aliases"] == {"archived": 1, "production": 2}
    with pytest.raises(InvalidInputError, match="unknown alias 'champion'; choose 'staging', 'production' or "):
        registry.promote("promo", 1, "champion")
    with pytest.raises(RegistryNotFoundError, match="model 'promo' version 9"):
        registry.promote("promo", 9, "staging")
    with pytest.raises(RegistryNotFoundError, match="alias 'staging'"):
        registry.resolve("models:/promo@staging")
    with pytest.raises(InvalidInputError, match="must be models:/NAME@ALIAS"):
        registry.resolve("models:/a/b/c")


def test_verify_names_the_changed_file(registry, finetuned):
    registry.register(finetuned(seed=5), "tamper")
    path = registry.resolve("models:/tamper/1")[0]
    data = bytearray((path / "vocab.json").read_bytes())
    data[10] ^= 1
    (path / "vocab.json").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"vocab\.json: tokenizer file sha256"):
        registry.verify("tamper", 1)


def test_by_path_registration_and_rewritten_manifest(registry, finetuned):
    from robertaops.model.manifest import write_manifest

    ckpt = finetuned(seed=6)
    v = registry.register(ckpt, "bypath", copy=False, alias="staging")
    assert v["tags"]["storage"] == "path" and v["path"] == str(ckpt.resolve()) and v["aliases"] == ["staging"]
    assert registry.verify("bypath", alias="staging")["files"] >= 5
    (ckpt / "tokenizer_config.json").write_text("{}")
    write_manifest(ckpt)  # a consistent directory again, but not the one that was registered
    with pytest.raises(ManifestError, match="manifest was rewritten"):
        registry.verify("bypath", 1)


def test_register_refuses_a_swapped_tokenizer(registry, finetuned, default_model_dir):
    import shutil

    ckpt = finetuned(seed=7)
    shutil.copy(default_model_dir / "tokenizer.json", ckpt / "tokenizer.json")
    with pytest.raises(ManifestError, match=r"tokenizer\.json"):
        registry.register(ckpt, "swapped")
    assert not [m for m in registry.models() if m["name"] == "swapped"]


def test_cli_register_promote_show_and_errors(registry, finetuned):
    from robertaops import cli

    runner, uri = CliRunner(), registry.uri
    out = runner.invoke(cli.app, ["registry", "register", str(finetuned(seed=8)), "--name", "cli-clf",
                                  "--alias", "staging", "--tracking-uri", uri])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["aliases"] == ["staging"]
    out = runner.invoke(cli.app, ["registry", "promote", "cli-clf", "1", "-a", "production", "--tracking-uri", uri])
    assert json.loads(out.stdout)["version"] == 1
    out = runner.invoke(cli.app, ["registry", "show", "cli-clf", "--alias", "production", "--tracking-uri", uri])
    assert sorted(json.loads(out.stdout)["aliases"]) == ["production", "staging"]
    bad = runner.invoke(cli.app, ["registry", "promote", "cli-clf", "1", "--alias", "prod", "--tracking-uri", uri])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert bad.stderr.strip().startswith("error: unknown alias 'prod'") and len(bad.stderr.strip().splitlines()) == 1
    missing = runner.invoke(cli.app, ["registry", "show", "nope", "--tracking-uri", uri])
    assert missing.exit_code == 2 and "model 'nope' is not in the registry" in missing.stderr
