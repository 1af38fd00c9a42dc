"""Operations routes: health probes, Prometheus metrics, and the admin API (role `admin`).

- GET /health: TEI's health check, 200 once every model is loaded and warmed up, else 503.
- GET /health/live: 200 while the process serves HTTP (Kubernetes liveness: restart only a wedged process).
- GET /health/ready: 200 when ready, 503 before warm-up ends and while shutting down (readiness: route traffic).
- GET /metrics: Prometheus text format. Probes and metrics need no API key (kubelet and Prometheus have none).
- GET /admin/models, GET /admin/settings: what is served and how (key file path, never key material).
- GET/POST /admin/rollouts, GET/DELETE /admin/rollouts/{model}, POST /admin/rollouts/{model}/promote: canary and
  shadow rollouts (serving/rollouts.py): start one, watch its windows and shadow agreement, stop it, or promote the
  candidate to answer for the model.
- POST /admin/models {"name", "model"}: load a checkpoint (path or hub id) and serve it under `name` once warmed up;
  DELETE /admin/models/{name}: stop routing to it, let its in-flight inputs finish, free it. Both need an admin key:
  a server without --api-keys refuses them (403), since loading files from the server's disk is not for anyone.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import ForbiddenError, NotReadyError
from .deps import Call, get_call, json_response, require
from .rollouts import RolloutSpec

health = APIRouter(tags=["Operations"])
admin = APIRouter(prefix="/admin", dependencies=[require("admin")], tags=["Admin"])
CallDep = Depends(get_call)


@health.get("/health", summary="200 when the models are loaded and warmed up, else 503")
async def healthy(request: Request) -> Response:
    return ready_or_503(request)


@health.get("/health/ready", summary="Readiness probe: 200 when ready, else 503")
async def ready(request: Request) -> Response:
    return ready_or_503(request)


@health.get("/health/live", summary="Liveness probe: 200 while the process serves HTTP")
async def live() -> Response:
    return json_response({"status": "alive"})


@health.get("/metrics", summary="Prometheus metrics", include_in_schema=True)
async def metrics(request: Request) -> Response:
    if request.app.state.backend is not None:
        request.app.state.backend.export_drift()
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)


@admin.get("/models", summary="Served models with their full info; the default first")
async def admin_models(call: Call = CallDep) -> Response:
    names = call.backend.names if call.backend is not None else []
    return json_response([{"name": n, "default": i == 0, "info": call.backend.info(n)} for i, n in enumerate(names)])


class LoadModelRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9._:\-]{1,128}$", examples=["sst2-v2"])
    model: str = Field(min_length=1, description="a checkpoint directory on the server or a hub id",
                       examples=["/models/sst2-v2"])


@admin.get("/models/{name}", summary="One served model's info")
async def admin_model(name: str, call: Call = CallDep) -> Response:
    call.model(name)
    return json_response({"name": name, "default": call.backend.names[0] == name, "info": call.backend.info(name)})


@admin.post("/models", status_code=201, summary="Load a model and serve it under a new name once warmed up")
async def load_model(body: LoadModelRequest, call: Call = CallDep) -> Response:
    mutable(call)
    info = await call.backend.add_model(body.name, body.model)
    return json_response({"name": body.name, "default": False, "info": info}, status_code=201)


@admin.delete("/models/{name}", summary="Stop serving a model; its in-flight inputs finish first")
async def unload_model(name: str, call: Call = CallDep) -> Response:
    mutable(call)
    await call.backend.remove_model(name)
    return json_response({"name": name, "unloaded": True, "models": list(call.backend.names)})


class RolloutRequest(BaseModel):
    model: str = Field(description="the served name clients ask for")
    candidate: str = Field(description="another served model: the version being tried")
    mode: Literal["canary", "shadow"] = "canary"
    fraction: float = Field(0.1, ge=0.0, le=1.0, description="canary: share of requests sent to the candidate")
    sticky: str = Field("key", description="'key' (API key) or 'header:<name>': who always sees the same version")
    max_error_rate: float = Field(0.05, ge=0.0, le=1.0)
    max_p99_ms: float | None = Field(None, gt=0)
    window_seconds: float = Field(60.0, gt=0)
    min_requests: int = Field(20, ge=1)


@admin.get("/rollouts", summary="Every rollout with its state, windows and shadow agreement")
async def rollouts(call: Call = CallDep) -> Response:
    return json_response([r.snapshot() for r in call.backend.rollouts.by_model.values()])


@admin.post("/rollouts", status_code=201, summary="Start a canary or shadow rollout of a served candidate")
async def start_rollout(body: RolloutRequest, call: Call = CallDep) -> Response:
    mutable(call)
    rollout = call.backend.start_rollout(RolloutSpec(**body.model_dump()))
    return json_response(rollout.snapshot(), status_code=201)


@admin.get("/rollouts/{model}", summary="One rollout")
async def rollout(model: str, call: Call = CallDep) -> Response:
    return json_response(call.backend.rollouts.get(model).snapshot())


@admin.delete("/rollouts/{model}", summary="Stop a rollout: all traffic back to the model, nothing mirrored")
async def stop_rollout(model: str, call: Call = CallDep) -> Response:
    mutable(call)
    return json_response({**call.backend.stop_rollout(model).snapshot(), "state": "stopped"})


@admin.post("/rollouts/{model}/promote", summary="The candidate answers for the model from now on")
async def promote(model: str, call: Call = CallDep) -> Response:
    mutable(call)
    rollout = await call.backend.promote(model)
    return json_response({**rollout.snapshot(), "state": "promoted", "info": call.backend.info(model)})


@admin.get("/settings", summary="The server's settings")
async def admin_settings(call: Call = CallDep) -> Response:
    return json_response(call.settings.model_dump(mode="json"))


def mutable(call: Call) -> None:
    if call.request.app.state.keyring.open:
        raise ForbiddenError("loading and unloading models needs an admin API key: start the server with --api-keys")
    if call.backend is None or not call.backend.ready:
        raise NotReadyError("the server is starting or stopping; retry shortly")


def ready_or_503(request: Request) -> Response:
    backend = request.app.state.backend
    if backend is None or not backend.ready:
        raise NotReadyError("not ready: the models are loading or the server is shutting down")
    return json_response({"status": "ready", "models": list(backend.names)})
