"""Settings: one pydantic-settings class for the server; every field is a CLI flag and an env var ROBERTAOPS_*.

`robertaops serve --max-batch-tokens 4096` and `ROBERTAOPS_MAX_BATCH_TOKENS=4096` set the same field. Models are
given as NAME=PATH_OR_ID (a bare PATH_OR_ID is named after its last path component); the first is the default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import InvalidInputError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROBERTAOPS_", extra="ignore")

    # models
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["all-MiniLM-L6-v2"],
        description="NAME=PATH_OR_ID, repeatable; the first is the default",
    )
    dtype: str = "float32"
    device: str = "cpu"
    max_length: int | None = None
    # CPU float models: each encoder layer one TorchScript call that runs without the GIL, on plain (MKL) Linears
    # instead of oneDNN's packed ones (model/traced.py); None: float32 on Intel CPUs (api.traced_by_default)
    trace_layers: bool | None = None

    # network
    host: str = "127.0.0.1"
    port: int = 8080

    # batching and backpressure
    max_batch_tokens: int | None = None  # padded tokens per forward pass; None = engine default for the device
    max_batch_requests: int = 256  # inputs per forward pass
    # batches run at once per model, each on torch_threads / model_workers intra-op threads (benchmarks/load.py);
    # None: two on a CPU with two or more threads, one on a GPU (api.serving_workers)
    model_workers: int | None = Field(default=None, ge=1, le=64)
    # niceness of the event-loop thread once the models are warm (0 = leave it): see serving/app.py
    loop_nice: int = Field(default=10, ge=0, le=19)
    max_concurrent_requests: int = 512  # queued inputs (counted per input) before 429
    max_client_batch_size: int = 256  # inputs in one request before 422
    payload_limit: int = 2_000_000  # bytes of request body before 413
    request_timeout: float = 30.0  # seconds before 504

    # security
    api_keys: Path | None = None  # file of hashed keys with roles; None = open server (warned at start-up)
    rate_limit: float | None = None  # requests per second per key (token bucket); None = unlimited
    rate_burst: int = 20

    # rollouts started with the server: JSON objects {"model", "candidate", "mode", "fraction", ...}, both served
    rollouts: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)
    # search indexes served on /search and /documents: NAME=DIR (a bare DIR is named after it); the first is the default
    indexes: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # cascades served as their own model name: {"name", "small", "large", "threshold"}, small and large served
    cascades: Annotated[list[dict[str, Any]], NoDecode] = Field(default_factory=list)

    # online drift: NAME=REF.npz (from `robertaops drift fit`), repeatable; the last `drift_window` inputs per model
    drift_references: Annotated[list[str], NoDecode] = Field(default_factory=list)
    drift_window: int = Field(default=2000, ge=10)

    # observability
    log_inputs: bool = False  # log raw inputs instead of their hashes
    otlp_endpoint: str | None = None  # OTLP/HTTP traces when set

    # registry: with watch, models given as models:/NAME@ALIAS reload when the alias moves (polled every N seconds)
    watch: bool = False
    watch_interval: float = Field(default=30.0, gt=0)

    @field_validator("models", "indexes", "drift_references", mode="before")
    @classmethod
    def _split(cls, value):
        if isinstance(value, str):  # ROBERTAOPS_MODELS="a=path1,b=path2" or a JSON list
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [v for v in value.split(",") if v.strip()]
        return value

    @field_validator("rollouts", "cascades", mode="before")
    @classmethod
    def _rollouts(cls, value):
        """ROBERTAOPS_ROLLOUTS / --rollout (and cascades): a JSON object, a JSON list of them, or a list of JSON
        strings."""
        if isinstance(value, str):
            value = [value]
        out = []
        for item in value or []:
            if isinstance(item, str):
                try:
                    item = json.loads(item)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{item!r} is not JSON: {exc}") from None
            out.extend(item if isinstance(item, list) else [item])
        return out

    def model_specs(self) -> list[tuple[str, str]]:
        """[(name, path_or_id)] in order, names unique."""
        specs: list[tuple[str, str]] = []
        for spec in self.models:
            name, sep, target = spec.partition("=")
            if not sep:
                target = spec
                name = Path(spec.rstrip("/")).name or spec
            name, target = name.strip(), target.strip()
            if not name or not target:
                raise InvalidInputError(f"model spec {spec!r} must be NAME=PATH_OR_ID or PATH_OR_ID")
            if any(name == n for n, _ in specs):
                raise InvalidInputError(f"model name {name!r} is given twice")
            specs.append((name, target))
        if not specs:
            raise InvalidInputError("at least one model is needed (--model NAME=PATH_OR_ID)")
        return specs
