"""The model registry on MLflow: versions with lineage tags, aliases, and resolving `models:/NAME@alias` to files.

Store: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else `sqlite:///$ROBERTAOPS_HOME/registry.db` (ROBERTAOPS_HOME
defaults to ~/.robertaops), with artifacts in `registry-artifacts/` beside the sqlite file. One fixed default, not the
current directory: a server started elsewhere must find the same registry.

Registering copies the checkpoint into the version's artifacts (the default): a version is then immutable, so
re-running a fine-tune into the same output folder cannot change what `production` serves. `copy=False` records the
path instead (large checkpoints on a shared filesystem); the manifest, whose sha256 is a version tag, still catches
a changed file. Each registration is an MLflow run (experiment `robertaops-registry`) holding the artifacts, the
lineage record (lineage.json), the training metrics and the fine-tuning parameters.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, RegistryError, RegistryNotFoundError, choices
from ..model.manifest import MANIFEST, ManifestError, sha256_file, verify_manifest, write_manifest
from .lineage import as_tags, gather
from .lineage import local_path as _local

ALIASES = ("staging", "production", "archived")
EXPERIMENT = "robertaops-registry"
URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?$")
log = logging.getLogger("robertaops.registry")


def home() -> Path:
    return Path(os.environ.get("ROBERTAOPS_HOME") or Path.home() / ".robertaops").expanduser()


def default_uri() -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{home().resolve() / 'registry.db'}"


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """'models:/NAME@alias' | 'models:/NAME/3' | 'models:/NAME' (latest) -> (name, version, alias)."""
    m = URI_RE.match(uri.strip())
    if not m:
        raise InvalidInputError(f"registry URI {uri!r} must be models:/NAME@ALIAS, models:/NAME/VERSION or "
                                "models:/NAME")
    return m["name"], m["version"], m["alias"]


def is_registry_uri(target: str) -> bool:
    return str(target).startswith("models:/")


class Registry:
    """Model versions in an MLflow store. Every method returns JSON-able dicts (the CLI prints them)."""

    def __init__(self, uri: str | None = None):
        self.uri = uri or default_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        import mlflow  # seconds to import: only when a registry is used
        from mlflow import MlflowClient

        for name in ("mlflow", "alembic"):  # their INFO lines (db migrations) are noise on a CLI's stderr
            logging.getLogger(name).setLevel(logging.WARNING)
        self.mlflow = mlflow
        try:
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            self.client.search_registered_models(max_results=1)  # opens (and migrates) the store now
        except Exception as exc:  # noqa: BLE001 - any store failure is the same to the user
            raise RegistryError(f"cannot open the registry at {self.uri}: {type(exc).__name__}: {exc}") from None

    # -- looking things up ----------------------------------------------------------------------------------------
    def _call(self, what: str, fn, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
                raise RegistryNotFoundError(f"{what} is not in the registry at {self.uri}") from None
            raise RegistryError(f"{what}: {exc.message}") from None

    def version(self, name: str, version: str | int | None = None, alias: str | None = None):
        """One MLflow ModelVersion: by number, by alias, or (neither) the latest."""
        if alias:
            return self._call(f"model {name!r} alias {alias!r}", self.client.get_model_version_by_alias, name, alias)
        if version is not None:
            return self._call(f"model {name!r} version {version}", self.client.get_model_version, name, str(version))
        versions = self._call(f"model {name!r}", self.client.search_model_versions, f"name = '{name}'")
        if not versions:
            raise RegistryNotFoundError(f"model {name!r} is not in the registry at {self.uri}")
        return max(versions, key=lambda v: int(v.version))

    def aliases(self, name: str) -> dict[str, int]:
        return {a: int(v) for a, v in self._call(f"model {name!r}", self.client.get_registered_model, name)
                .aliases.items()}

    def describe(self, mv, aliases: dict[str, int] | None = None) -> dict[str, Any]:
        aliases = self.aliases(mv.name) if aliases is None else aliases
        return {"name": mv.name, "version": int(mv.version), "aliases": sorted(a for a, v in aliases.items()
                                                                               if str(v) == str(mv.version)),
                "uri": f"models:/{mv.name}/{mv.version}", "path": str(self.local_path(mv)), "source": mv.source,
                "run_id": mv.run_id, "description": mv.description or "", "created": mv.creation_timestamp,
                "tags": dict(sorted(mv.tags.items()))}

    def models(self) -> list[dict[str, Any]]:
        out = []
        for rm in self.client.search_registered_models():
            versions = self.client.search_model_versions(f"name = '{rm.name}'")
            out.append({"name": rm.name, "versions": len(versions),
                        "latest": max((int(v.version) for v in versions), default=None),
                        "aliases": {a: int(v) for a, v in sorted(rm.aliases.items())}})
        return out

    def versions(self, name: str) -> list[dict[str, Any]]:
        aliases = self.aliases(name)
        found = self.client.search_model_versions(f"name = '{name}'")
        return [self.describe(v, aliases) for v in sorted(found, key=lambda v: int(v.version))]

    # -- registering and promoting --------------------------------------------------------------------------------
    def _experiment(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the db, not in whatever the cwd happens to be
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / "registry-artifacts").resolve().as_uri()
        return self.client.create_experiment(EXPERIMENT, artifact_location=location)

    def register(self, directory: str | Path, name: str, *, copy: bool = True, alias: str | None = None,
                 description: str | None = None) -> dict[str, Any]:
        """A new version of `name` from a checkpoint directory (which must load: manifest and tokenizer checked)."""
        from ..api import load

        directory = Path(directory).resolve()
        if not (directory / "config.json").is_file():
            raise InvalidInputError(f"{directory} is not a checkpoint directory (no config.json)")
        if alias is not None and alias not in ALIASES:
            raise InvalidInputError(f"unknown alias {alias!r}; choose {choices(ALIASES)}")
        if not copy and not (directory / MANIFEST).exists():
            raise InvalidInputError(f"{directory} has no {MANIFEST}: registering by path needs one (a checkpoint "
                                    "saved by robertaops has it; or register with copying, which writes one)")
        load(directory)  # refuses a corrupt checkpoint or a swapped tokenizer before it becomes a version
        with tempfile.TemporaryDirectory() as tmp:
            staged = directory
            if copy and not (directory / MANIFEST).exists():  # never write into the user's folder
                staged = Path(tmp) / "checkpoint"
                shutil.copytree(directory, staged)
                write_manifest(staged)
            lineage = gather(staged, [self.uri])
            lineage["checkpoint"] = str(directory)
            manifest_sha = sha256_file(staged / MANIFEST)
            run = self.client.create_run(self._experiment(), run_name=f"register-{name}",
                                         tags={"robertaops.registered_model": name})
            rid = run.info.run_id
            if copy:
                self.client.log_artifacts(rid, str(staged), "checkpoint")
            else:
                self.client.log_artifact(rid, str(directory / MANIFEST), "checkpoint")
            (Path(tmp) / "lineage.json").write_text(json.dumps(lineage, indent=2, default=str) + "\n")
            self.client.log_artifact(rid, str(Path(tmp) / "lineage.json"))
        for key, value in lineage["metrics"].items():
            self.client.log_metric(rid, key, float(value))
        for key, value in list(lineage["params"].items())[:100]:
            self.client.log_param(rid, key, str(value)[:500])
        self.client.set_terminated(rid)
        tags = {**as_tags(lineage), "storage": "copy" if copy else "path", "manifest_sha256": manifest_sha}
        if not copy:
            tags["path"] = str(directory)
        if self.client.search_registered_models(filter_string=f"name = '{name}'") == []:
            self.client.create_registered_model(name)
        mv = self.client.create_model_version(name, source=f"{run.info.artifact_uri}/checkpoint", run_id=rid,
                                              tags=tags, description=description)
        if alias:
            self.promote(name, mv.version, alias)
        return self.describe(self.version(name, mv.version))

    def promote(self, name: str, version: str | int, alias: str) -> dict[str, Any]:
        """Point `alias` at `version`. Moving `production` puts the version it leaves under `archived`."""
        if alias not in ALIASES:
            raise InvalidInputError(f"unknown alias {alias!r}; choose {choices(ALIASES)}")
        mv = self.version(name, version)
        previous = self.aliases(name).get(alias)
        self.client.set_registered_model_alias(name, alias, mv.version)
        archived = None
        if alias == "production" and previous is not None and str(previous) != str(mv.version):
            self.client.set_registered_model_alias(name, "archived", previous)
            archived = int(previous)
        log.info("model %s: %s -> version %s (was %s)", name, alias, mv.version, previous)
        return {"name": name, "alias": alias, "version": int(mv.version),
                "previous": int(previous) if previous is not None else None, "archived": archived}

    # -- files ----------------------------------------------------------------------------------------------------
    def local_path(self, mv) -> Path:
        """The checkpoint's directory on this machine (remote artifacts are downloaded once into a cache)."""
        if mv.tags.get("path"):
            return Path(mv.tags["path"])
        local = _local(mv.source)
        if local is not None:
            return local
        cache = home() / "cache" / mv.name / str(mv.version)
        if not (cache / "checkpoint" / MANIFEST).exists():
            cache.mkdir(parents=True, exist_ok=True)
            self.mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(cache),
                                                     tracking_uri=self.uri)
        return cache / "checkpoint"

    def resolve(self, uri: str) -> tuple[Path, dict[str, Any]]:
        """models:/NAME@alias (or /VERSION) -> (checkpoint directory, version description)."""
        name, version, alias = parse_uri(uri)
        mv = self.version(name, version, alias)
        return self.local_path(mv), {"name": name, "version": int(mv.version), "alias": alias}

    def verify(self, name: str, version: str | int | None = None, alias: str | None = None) -> dict[str, Any]:
        """Re-hash the version's files against its manifest, and the manifest against the hash taken when it was
        registered (so a rewritten manifest is caught too). Raises ManifestError naming the file."""
        mv = self.version(name, version, alias)
        path = self.local_path(mv)
        if not path.is_dir():
            raise ManifestError(f"{path}: the checkpoint of {name} version {mv.version} is gone")
        summary = verify_manifest(path)
        recorded = mv.tags.get("manifest_sha256")
        actual = sha256_file(path / MANIFEST)
        if recorded and recorded != actual:
            raise ManifestError(f"{path / MANIFEST}: sha256 {actual[:12]}... differs from the {recorded[:12]}... "
                                f"recorded when version {mv.version} was registered: the manifest was rewritten")
        return {"name": name, "version": int(mv.version), "ok": True, **summary}
