"""Fixtures for the server tests: the served models (loaded once per session), an app factory, and a session-wide
in-process client on the real Backend.

Models: the default all-MiniLM-L6-v2 (served as "all-MiniLM-L6-v2", the default), and tiny random RoBERTa
checkpoints: a 3-label classifier, a 1-label cross-encoder reranker, a token classifier and an MLM model. The
expected values come from the same `Model` objects called directly (the Python API), so the tests check the HTTP
layer, not the pipelines (tests/pipelines does that against transformers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

DEFAULT = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session")
def models(default_model_dir, make_checkpoint) -> dict:
    import robertaops as ro

    return {
        DEFAULT: ro.load(default_model_dir),
        "classifier": ro.load(make_checkpoint("roberta", "sequence_classification")[0]),
        "reranker": ro.load(make_checkpoint("roberta", "sequence_classification", num_labels=1)[0]),
        "ner": ro.load(make_checkpoint("roberta", "token_classification")[0]),
        "mlm": ro.load(make_checkpoint("roberta", "mlm")[0]),
    }


@pytest.fixture(scope="session")
def make_app(models):
    """Factory: (backend class=Backend, served model names=all, **settings) -> a FastAPI app on those models."""
    from robertaops.serving.app import create_app
    from robertaops.serving.backend import Backend
    from robertaops.serving.metrics import Metrics
    from robertaops.settings import Settings

    def make(backend_cls: type = Backend, names: list[str] | None = None, **overrides) -> FastAPI:
        served = {n: models[n] for n in (names or list(models))}
        settings = Settings(models=list(served), **overrides)
        return create_app(settings, backend_cls(settings, models=served, metrics=Metrics()))

    return make


@pytest.fixture(scope="session")
def client(make_app) -> Iterator[TestClient]:
    """One app for the session (lifespan entered once): the default settings, every model served."""
    with TestClient(make_app()) as c:
        yield c


@pytest.fixture(scope="session")
def default_model(models):
    return models[DEFAULT]


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An async client on `app`, with its lifespan run: for tests that need truly concurrent requests."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


@pytest.fixture(scope="session")
def concurrently():
    """Run `fn(client)` (a coroutine function) on a fresh event loop against `app`, lifespan included."""

    def go(app: FastAPI, fn):
        async def main():
            async with serving(app) as c:
                return await fn(c)

        return asyncio.run(main())

    return go
