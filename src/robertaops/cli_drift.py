"""CLI for drift detection: `robertaops drift fit|report` (written next)."""

from __future__ import annotations

import typer

drift_app = typer.Typer(no_args_is_help=True, help="Data drift: reference statistics and reports.")


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")
