"""CLI for the model registry: `robertaops registry register|list|show|promote|card|verify|resolve`.

`register(app)` adds the group to the main app (cli.py). MLflow and the engine are imported inside the commands
(MLflow alone takes seconds). Output is JSON on stdout (one object, or one per line for `list`), so scripts can
chain commands; user errors are RobertaOpsErrors that the main app prints as one `error: ...` line, exit code 2.
The store: --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite:///$ROBERTAOPS_HOME/registry.db (~/.robertaops).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

registry_app = typer.Typer(no_args_is_help=True, help="Model versions, aliases, model cards and manifests (MLflow).")

UriOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking/registry URI",
    show_default="sqlite:///$ROBERTAOPS_HOME/registry.db (~/.robertaops)")]
VersionOpt = Annotated[int | None, typer.Option("--version", "-v", help="version number", show_default="latest")]
AliasOpt = Annotated[str | None, typer.Option("--alias", "-a", help="staging, production or archived")]


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, default=str))


def _registry(uri: str | None):
    from .registry import Registry

    return Registry(uri)


@registry_app.command("register")
def register_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint directory (e.g. a `robertaops finetune` output)")],
    name: Annotated[str, typer.Option("--name", "-n", help="registered model name")],
    alias: AliasOpt = None,
    description: Annotated[str | None, typer.Option(help="version description")] = None,
    copy: Annotated[bool, typer.Option(help="copy the checkpoint into the version's artifacts (immutable); "
                                            "--no-copy records its path")] = True,
    tracking_uri: UriOpt = None,
) -> None:
    """Register a checkpoint as a new version, with lineage tags (base model, data sha256, params, git commit,
    metrics); prints the version as JSON."""
    _echo(_registry(tracking_uri).register(checkpoint, name, copy=copy, alias=alias, description=description))


@registry_app.command("list")
def list_cmd(tracking_uri: UriOpt = None) -> None:
    """Registered models, one JSON object per line: versions, latest, aliases."""
    for row in _registry(tracking_uri).models():
        _echo(row)


@registry_app.command("show")
def show_cmd(name: str, version: VersionOpt = None, alias: AliasOpt = None,
             all_versions: Annotated[bool, typer.Option("--all", help="every version, one per line")] = False,
             tracking_uri: UriOpt = None) -> None:
    """One version (latest, --version N or --alias A) with its tags, or --all versions."""
    reg = _registry(tracking_uri)
    if all_versions:
        for row in reg.versions(name):
            _echo(row)
        return
    _echo(reg.describe(reg.version(name, version, alias)))


@registry_app.command("promote")
def promote_cmd(name: str, version: int,
                alias: Annotated[str, typer.Option("--alias", "-a", help="staging, production or archived")],
                tracking_uri: UriOpt = None) -> None:
    """Point an alias at a version. Moving production puts the version it leaves under archived."""
    _echo(_registry(tracking_uri).promote(name, version, alias))


@registry_app.command("verify")
def verify_cmd(name: str, version: VersionOpt = None, alias: AliasOpt = None, tracking_uri: UriOpt = None) -> None:
    """Re-hash a version's files against its manifest (and the manifest against its registration)."""
    _echo(_registry(tracking_uri).verify(name, version, alias))


@registry_app.command("resolve")
def resolve_cmd(uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
                tracking_uri: UriOpt = None) -> None:
    """Print the local checkpoint directory a registry URI points at (what `serve --model` loads)."""
    path, info = _registry(tracking_uri).resolve(uri)
    _echo({**info, "path": str(path)})


@registry_app.command("card")
def card_cmd(
    name: str, version: VersionOpt = None, alias: AliasOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="directory for MODEL_CARD.md and model_card.json")]
    = Path("."),
    intended_use: Annotated[str | None, typer.Option(help="intended-use text", show_default="from the task")] = None,
    probe: Annotated[bool, typer.Option(help="run the name/pronoun bias probe")] = True,
    tracking_uri: UriOpt = None,
) -> None:
    """Write a model card (Markdown + JSON): intended use, data and lineage, metrics, limitations, bias probe. The
    card is also logged to the version's registration run."""
    from .api import load
    from .registry.card import build, render, to_json

    reg = _registry(tracking_uri)
    mv = reg.version(name, version, alias)
    desc = reg.describe(mv)
    lineage = _lineage(reg, mv)
    card = build(desc, lineage, load(reg.local_path(mv)), intended=intended_use, probe=probe)
    output.mkdir(parents=True, exist_ok=True)
    (output / "MODEL_CARD.md").write_text(render(card))
    (output / "model_card.json").write_text(to_json(card))
    for file in ("MODEL_CARD.md", "model_card.json"):
        reg.client.log_artifact(mv.run_id, str(output / file), "card")
    _echo({"name": name, "version": desc["version"], "markdown": str(output / "MODEL_CARD.md"),
           "json": str(output / "model_card.json"),
           "bias_probe_max_gap": card["bias_probe"]["max_gap"] if card["bias_probe"] else None})


def _lineage(reg, mv) -> dict:
    """The lineage.json recorded at registration (the tags hold a flat copy)."""
    from .registry.lineage import local_path

    try:
        local = local_path(reg.client.get_run(mv.run_id).info.artifact_uri)
        if local is not None:  # a local store: read it in place (no download, no progress bar)
            return json.loads((local / "lineage.json").read_text())
        path = reg.mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="lineage.json",
                                                       tracking_uri=reg.uri)
        return json.loads(Path(path).read_text())
    except Exception:  # noqa: BLE001 - a version registered by another tool: fall back to its tags
        tags = mv.tags
        return {"base_model": tags.get("base_model"), "task": tags.get("task"), "data": [], "code": {},
                "metrics": {k[7:]: float(v) for k, v in tags.items() if k.startswith("metric.")},
                "params": {k[6:]: v for k, v in tags.items() if k.startswith("param.")},
                "weights_sha256": tags.get("weights_sha256")}
