"""The app factory: `create_app(settings, backend=None) -> FastAPI`. Importing this module does nothing else.

The lifespan loads the models (in a thread, so the event loop stays free) unless a backend is given, starts its
batchers and warms every model up; only then does the server report ready. On shutdown it stops the batchers.
OpenAPI: /docs (Swagger UI) and /openapi.json.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version as dist_version

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from ..settings import Settings
from . import errors, watch
from .auth import Keyring, load_keys
from .backend import Backend
from .direct import DirectRoutes
from .metrics import Metrics
from .middleware import RequestMiddleware
from .routes_admin import admin, health
from .routes_openai import router as openai_router
from .routes_search import router as search_router
from .routes_tei import router as tei_router
from .schemas import ErrorBody

log = logging.getLogger("robertaops.serving")

ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorBody, "description": text} for code, text in {
        400: "not JSON / not UTF-8, or a task this model cannot do", 401: "missing or invalid API key",
        403: "the key's role does not allow this route", 404: "unknown model", 413: "body over --payload-limit",
        422: "invalid inputs, or too many", 429: "overloaded or rate limited (see Retry-After)",
        415: "the body is not declared as JSON", 503: "not ready",
        504: "the inputs did not run within --request-timeout",
    }.items()
}


def lower_loop_priority(nice: int) -> None:
    """Give the event-loop thread a lower CPU priority than the model's threads (which exist by now: warm-up ran).

    On a small CPU the loop shares the cores with the model's OpenMP threads, and each time the scheduler hands a
    core to HTTP work in the middle of a parallel region, the other model thread waits at the next barrier: a 20%
    co-runner cost the model 36% of its throughput (benchmarks/RESULTS.md). At a lower priority the loop runs in
    the gaps the model leaves (between batches, at its waits) and pre-empts it less: +26% served throughput on
    short inputs on 2 cores. Where cores are free this changes nothing. Threads started later by the loop inherit
    its niceness, so models loaded at run time (admin load, --watch) share the loop's priority."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    except OSError as exc:  # not Linux (per-thread niceness), or not permitted
        log.info("event-loop priority left as is: %s", exc)


class App(FastAPI):
    """FastAPI, except that requests for the inference routes (direct.py) enter in front of its middleware stack.

    FastAPI wraps every request in middlewares of its own (Starlette's error handler, FastAPI's exception telemetry
    and body limit). The inference routes need none of them: the request middleware catches errors, limits the body
    and traces (tracing.py) itself. FastAPI's native OpenTelemetry spans (only made when a global OpenTelemetry
    provider is configured) therefore cover the other routes only. Every other request takes FastAPI's whole path."""

    front: RequestMiddleware | None = None  # the request middleware, for the inference routes only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is not None and scope["type"] == "http" and self.state.direct.match(scope) is not None:
            scope["app"] = self  # as Starlette sets it: Request(scope).app
            await self.front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = getattr(backend, "metrics", None) or Metrics()
    keyring = Keyring(load_keys(settings.api_keys) if settings.api_keys else None, settings.rate_limit,
                      settings.rate_burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keyring.open:
            log.warning("no --api-keys file: the server accepts requests from anyone who can reach it")
        if app.state.backend is None:  # models:/NAME@alias targets resolve through the registry (watch.py)
            resolved = await asyncio.to_thread(watch.resolve_settings, settings)
            app.state.backend = await asyncio.to_thread(Backend, resolved, None, metrics)
        await app.state.backend.start()
        lower_loop_priority(settings.loop_nice)
        log.info("ready: serving %s on %s", ", ".join(app.state.backend.names), settings.device)
        app.state.watcher = watch.start_watch(app.state.backend, settings)  # None unless --watch
        try:
            yield
        finally:
            if app.state.watcher is not None:
                await app.state.watcher.stop()
            await app.state.backend.stop()
            metrics.ready.set(0)

    app = App(title="robertaops", version=dist_version("robertaops"), lifespan=lifespan, docs_url="/docs",
              description="RoBERTa-family encoders behind TEI- and OpenAI-compatible APIs.",
              responses=ERROR_RESPONSES, strict_content_type=False)  # no Content-Type: read as JSON
    app.state.settings = settings
    app.state.backend = backend
    app.state.metrics = metrics
    app.state.keyring = keyring
    app.state.direct = direct = DirectRoutes()
    app.state.started = int(time.time())
    errors.install(app)
    options = dict(settings=settings, metrics=metrics, keyring=keyring, direct=direct)
    app.add_middleware(RequestMiddleware, **options)
    app.front = RequestMiddleware(app.router, **options)  # only entered for a route in `direct`, which it answers
    for router in (health, tei_router, openai_router, admin):
        app.include_router(router)
    app.include_router(search_router)  # /search, /documents (routes_search.py)
    direct.collect([tei_router, openai_router])
    return app
