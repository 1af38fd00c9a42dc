"""Lineage of a checkpoint directory: what it was trained from, on which data, with which code and settings.

Read from files, never from the training package (registry and training sit side by side): `metrics.json` (written
by `robertaops finetune`: base model, metrics, the MLflow run id), `config.json`, `manifest.json`, and — when the
fine-tuning run can be found in a tracking store — that run's parameters (data files, hyper-parameters). Data files
are hashed here, at registration: the fine-tuning run records their paths, not their contents.
"""

from __future__ import annotations

import json
import logging
import subprocess
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..model.manifest import MANIFEST, sha256_file

log = logging.getLogger("robertaops.registry")
# Fine-tuning parameters that name data files (their sha256 goes into the lineage).
DATA_PARAMS = ("train", "dev", "data", "corpus")


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


def code_version() -> dict[str, Any]:
    """The robertaops version and, when running from a git checkout, its commit and whether it had local edits."""
    try:
        out: dict[str, Any] = {"robertaops_version": dist_version("robertaops")}
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled tree
        out = {"robertaops_version": "unknown"}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        out.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):  # installed from a wheel, or no git: the version is all we have
        pass
    return out


def local_path(uri: str) -> Path | None:
    """The local path behind a file: URI or plain path; None for a remote artifact store."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri)
    return None


def training_run(directory: Path, run_id: str | None, uris: list[str]) -> tuple[str, str, dict[str, str]] | None:
    """(tracking uri, run id, params) of the fine-tuning run that wrote `directory`: by the run id in metrics.json
    when it has one, else the run whose logged metrics.json artifact is byte-identical to the directory's (the
    finetune logs it), among runs whose `output` param ends with the directory's name."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    want = sha256_file(directory / "metrics.json") if (directory / "metrics.json").exists() else None
    for uri in uris:
        try:
            client = MlflowClient(tracking_uri=uri)
            if run_id:
                try:
                    return uri, run_id, dict(client.get_run(run_id).data.params)
                except MlflowException:
                    continue
            if want is None:
                continue
            experiments = [e.experiment_id for e in client.search_experiments()]
            runs = client.search_runs(experiments, filter_string=f"params.output LIKE '%{directory.name}'",
                                      max_results=50, order_by=["attributes.start_time DESC"])
            for run in runs:
                art = local_path(run.info.artifact_uri)
                if art is not None and (art / "metrics.json").exists() and sha256_file(art / "metrics.json") == want:
                    return uri, run.info.run_id, dict(run.data.params)
        except Exception as exc:  # noqa: BLE001 - an unreadable store must not stop a registration
            log.warning("could not read tracking store %s: %s", uri, exc)
    return None


def gather(directory: Path, tracking_uris: list[str]) -> dict[str, Any]:
    """Everything the registry records about the checkpoint in `directory` (JSON-able)."""
    directory = Path(directory).resolve()
    metrics_file = _json(directory / "metrics.json")
    config = _json(directory / "config.json")
    manifest = _json(directory / MANIFEST)
    weights = {k: v["sha256"] for k, v in manifest.get("files", {}).items() if v.get("role") == "weights"}
    labels = config.get("id2label") or {}
    lineage: dict[str, Any] = {
        "checkpoint": str(directory),
        "base_model": metrics_file.get("base") or config.get("_name_or_path") or "unknown",
        "task": metrics_file.get("task") or (config.get("architectures") or ["unknown"])[0],
        "model_type": config.get("model_type"),
        "labels": [labels[k] for k in sorted(labels, key=int)] if isinstance(labels, dict) else list(labels),
        "weights_sha256": weights.get("model.safetensors") or next(iter(weights.values()), None),
        "metrics": {k: v for k, v in (metrics_file.get("metrics") or {}).items() if isinstance(v, int | float)},
        "primary_metric": metrics_file.get("primary"),
        "code": code_version(),
        "params": {},
        "data": [],
        "training_run": None,
    }
    # The finetune's default store is <output's parent>/mlruns.db; a team store comes first when given.
    local = directory.parent / "mlruns.db"
    candidates = list(tracking_uris) + ([f"sqlite:///{local}"] if local.exists() else [])
    found = training_run(directory, metrics_file.get("run_id"), candidates) if metrics_file else None
    if found:
        lineage["training_run"] = {"run_id": found[1], "tracking_uri": found[0]}
        lineage["params"] = found[2]
    for key in DATA_PARAMS:
        value = lineage["params"].get(key)
        if not value or value == "None":
            continue
        path = Path(value)
        if not path.is_absolute():  # the finetune ran somewhere; try the checkpoint's parent and the cwd
            path = next((p for p in (directory.parent / value, Path.cwd() / value) if p.exists()), path)
        entry: dict[str, Any] = {"role": key, "path": str(path)}
        if path.is_file():
            entry.update(size=path.stat().st_size, sha256=sha256_file(path))
        else:
            entry["sha256"] = None  # recorded, not found here: the card says so instead of guessing
        lineage["data"].append(entry)
    return lineage


def as_tags(lineage: dict[str, Any]) -> dict[str, str]:
    """Flat MLflow tags (strings, searchable) for a model version; the full record goes in lineage.json."""
    tags = {
        "base_model": str(lineage["base_model"]), "task": str(lineage["task"]),
        "model_type": str(lineage.get("model_type")), "labels": ",".join(map(str, lineage["labels"])),
        "weights_sha256": str(lineage.get("weights_sha256")),
        **{f"code.{k}": str(v) for k, v in lineage["code"].items()},
        **{f"metric.{k}": f"{v:.6g}" for k, v in lineage["metrics"].items()},
        **{f"param.{k}": str(v)[:500] for k, v in lineage["params"].items()},
    }
    for entry in lineage["data"]:
        tags[f"data.{entry['role']}"] = entry["path"]
        tags[f"data.{entry['role']}.sha256"] = str(entry["sha256"])
    if lineage["training_run"]:
        tags["training_run_id"] = lineage["training_run"]["run_id"]
    return tags
