"""Run tracking: MLflow (params, per-step metrics, artifacts) and the training-curve PNG.

MLflow is the project's tracker: a sqlite file by default (`sqlite:///<dir>/mlruns.db`, artifacts beside it in
`mlartifacts/`), any tracking server with `--tracking-uri`. Tracking is optional (`--tracking-uri none`), and
MLflow is imported only when used: it takes seconds to import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .loop import History


class Tracker:
    """A thin wrapper so the loop logs through one callable and a disabled tracker costs nothing."""

    def __init__(self, uri: str | None, experiment: str, run_name: str, artifacts_dir: Path | None = None):
        self.run = None
        if not uri or uri.lower() == "none":
            return
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep its INFO lines (db migrations) off stderr
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            location = artifacts_dir.resolve().as_uri() if artifacts_dir and uri.startswith("sqlite") else None
            mlflow.create_experiment(experiment, artifact_location=location)
        mlflow.set_experiment(experiment)
        self.run = mlflow.start_run(run_name=run_name)

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run else None

    def params(self, values: dict[str, Any]) -> None:
        if self.run:
            self.mlflow.log_params({k: str(v)[:500] for k, v in values.items()})

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.run:
            self.mlflow.log_metrics({k: float(v) for k, v in values.items()}, step=step)

    def artifact(self, path: Path) -> None:
        if self.run and path.exists():
            self.mlflow.log_artifact(str(path))

    def end(self, status: str = "FINISHED") -> None:
        if self.run:
            self.mlflow.end_run(status=status)
            self.run = None


def default_uri(output: Path) -> str:
    """sqlite file in the output's parent folder: every run under runs/ lands in one runs/mlruns.db."""
    return f"sqlite:///{(output.resolve().parent / 'mlruns.db')}"


def plot_curve(hist: History, primary: str, path: Path) -> Path:
    """Training loss per step and the dev metric per evaluation, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(hist.steps, hist.losses, color="tab:blue")
    left.set(xlabel="step", ylabel="training loss", title="loss")
    left.grid(alpha=0.3)
    if hist.evals:
        right.plot([s for s, _ in hist.evals], [m[primary] for _, m in hist.evals], marker="o", color="tab:green")
        right.axvline(hist.best_step, color="grey", linestyle="--", label=f"best (step {hist.best_step})")
        right.legend()
    right.set(xlabel="step", ylabel=f"dev {primary}", title=f"dev {primary}")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
