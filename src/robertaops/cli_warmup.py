"""`robertaops warm-up`: compile what a server compiles at start (the int8 layers, the AMX kernel) ahead of it.

A server builds these native libraries the first time it starts on a machine, into $ROBERTAOPS_HOME/kernels: it
was ready after 50-56 s with all-MiniLM-L6-v2 in int8 on 2 cores, against 4-6 s once they were cached
(benchmarks/int8_startup.py).
This command does the same work without serving, so that it can run where the cache will be found later: in an
image build for machines with the same CPU, in an init container writing to the volume the server reads, or on a
node before it takes traffic. It also answers the question an operator has before choosing `--dtype int8`: does the
fast path compile here at all? Without a C++ compiler the int8 layers run eagerly, at half the speed or less (no
faster than float32); the command then exits 2 and says so, where a server would only log a warning.

It takes the server's model flags and ROBERTAOPS_* variables, loads each model as `robertaops serve` would, runs
its warm-up (one forward per batch layout), and prints one JSON object per model, then a summary of the kernel cache
on the last line.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

COMPILED = {"aot", "torch.compile"}  # quantize.int8_layer_kind() values that are not (even partly) eager


def register(app: typer.Typer) -> None:
    @app.command("warm-up")
    def warm_up(
        model: Annotated[list[str] | None, typer.Option(
            "--model", "-m", help="NAME=PATH_OR_ID or NAME=models:/REG@ALIAS, repeatable (as for serve)",
            show_default="ROBERTAOPS_MODELS, else all-MiniLM-L6-v2")] = None,
        dtype: Annotated[str | None, typer.Option(help="float32, bfloat16, int8 or auto",
                                                  show_default="ROBERTAOPS_DTYPE, else float32")] = None,
        device: Annotated[str | None, typer.Option(help="torch device", show_default=False)] = None,
        max_length: Annotated[int | None, typer.Option(help="tokens per window", show_default=False)] = None,
    ) -> None:
        """Compile the models' native code (int8 layers, AMX kernel) into the kernel cache, as a server's start
        would; exits 2 when int8 layers would run eagerly (no C++ compiler)."""
        from .api import load
        from .errors import RobertaOpsError
        from .model.amx import cache_dir
        from .settings import Settings

        given = dict(models=model, dtype=dtype, device=device, max_length=max_length)
        try:  # flags win over ROBERTAOPS_* variables, which win over the defaults (as for serve)
            settings = Settings(**{k: v for k, v in given.items() if v is not None})
            specs = settings.model_specs()
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise RobertaOpsError(" ".join(str(exc).split())) from None
        started, eager = time.perf_counter(), []
        for name, target in specs:
            t = time.perf_counter()
            m = load(target, device=settings.device, dtype=settings.dtype, max_length=settings.max_length,
                     max_batch_tokens=settings.max_batch_tokens)
            m.warm_up()
            if m.int8_layer is not None and m.int8_layer not in COMPILED:
                eager.append(name)
            typer.echo(json.dumps({"model": name, "target": target, "dtype": m.dtype, "matmul": m.matmul,
                                   "int8_layer": m.int8_layer, "seconds": round(time.perf_counter() - t, 1)}))
        kernels = cache_dir()
        libraries = sorted(kernels.glob("*.so")) if kernels.is_dir() else []
        typer.echo(json.dumps({"kernels": str(kernels), "libraries": len(libraries),
                               "megabytes": round(sum(p.stat().st_size for p in libraries) / 1e6, 1),
                               "models": [name for name, _ in specs],
                               "seconds": round(time.perf_counter() - started, 1)}))
        if eager:
            raise RobertaOpsError(f"the int8 layers of {', '.join(eager)} run eagerly here, at half the speed or less: "
                                  "install a C++ compiler (g++) or point $CXX at one (the warnings above say what "
                                  "failed)")
