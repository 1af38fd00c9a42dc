"""Registry fixtures: one MLflow sqlite store per session (creating one runs MLflow's migrations, ~10 s), and
fine-tuned-looking checkpoint directories: a tiny classifier with metrics.json and a tracked fine-tuning run."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    from robertaops.registry import Registry

    root = tmp_path_factory.mktemp("registry")
    return Registry(f"sqlite:///{root}/registry.db")


@pytest.fixture
def finetuned(make_checkpoint, registry, tmp_path):
    """Factory: seed -> a checkpoint dir as `robertaops finetune` leaves it (weights, tokenizer, manifest,
    metrics.json naming its MLflow run, whose params name the training data file)."""
    import robertaops as ro

    def make(seed: int = 0, accuracy: float = 0.9, run_id_in_metrics: bool = True):
        data = tmp_path / f"train-{seed}.tsv"
        data.write_text("text\tlabel\ngood film\tpos\nbad film\tneg\n")
        client = registry.client
        exp = client.get_experiment_by_name("robertaops-finetune") or client.get_experiment(
            client.create_experiment("robertaops-finetune", artifact_location=(tmp_path / "art").as_uri()))
        run = client.create_run(exp.experiment_id)
        out = ro.load(make_checkpoint("roberta", "sequence_classification", seed=seed)[0]).save(tmp_path / f"ck{seed}")
        params = {"train": str(data), "dev": "None", "learning_rate": "3e-05", "epochs": "3", "output": str(out)}
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        metrics = {"task": "classify", "base": "roberta-tiny", "primary": "accuracy",
                   "metrics": {"accuracy": accuracy, "f1": accuracy - 0.05}}
        if run_id_in_metrics:
            metrics["run_id"] = run.info.run_id
        (out / "metrics.json").write_text(json.dumps(metrics))
        client.log_artifact(run.info.run_id, str(out / "metrics.json"))  # as the finetune does
        client.set_terminated(run.info.run_id)
        return out

    return make


@pytest.fixture
def copy_tree(tmp_path):
    def copy(src, name):
        return shutil.copytree(src, tmp_path / name)

    return copy
