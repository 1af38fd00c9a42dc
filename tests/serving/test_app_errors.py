"""One test per error status (auth's 401/403/429 are in test_app_auth.py, 503 in test_app_ops.py). Every error body
is {"error": message, "error_type": type}, from the one table in serving/errors.py."""

from __future__ import annotations

import asyncio
import logging

import pytest
from serving_helpers import error

from robertaops.serving.backend import Backend

DEFAULT = "all-MiniLM-L6-v2"
LONG = " ".join(["The old sailor walked along the quiet harbour at dawn."] * 80)




# -- 400 -------------------------------------------------------------------------------------------------------------
def test_400_invalid_json(client):
    r = client.post("/embed", content=b'{"inputs": ', headers={"content-type": "application/json"})
    assert "not valid JSON" in error(r, 400, "invalid_json")


def test_400_invalid_utf8(client):
    r = client.post("/embed", content=b'{"inputs": "caf\xe9"}', headers={"content-type": "application/json"})
    assert "UTF-8" in error(r, 400, "invalid_json")


def test_415_not_json(client):
    r = client.post("/embed", content=b'{"inputs": "x"}', headers={"content-type": "application/x-www-form-urlencoded"})
    assert "application/json" in error(r, 415, "unsupported_media_type")


def test_no_content_type_is_read_as_json(client):
    r = client.post("/embed", content=b'{"inputs": "x"}')
    assert "content-type" not in r.request.headers and r.status_code == 200


def test_400_unsupported_task(client):
    r = client.post("/predict", json={"inputs": "hello"})  # the default model is an embedding model
    assert "sequence_classification" in error(r, 400, "unsupported_task")


# -- 404, 405 --------------------------------------------------------------------------------------------------------
def test_404_unknown_model(client):
    message = error(client.post("/embed", json={"inputs": "x", "model": "gpt-9"}), 404, "model_not_found")
    assert "gpt-9" in message and DEFAULT in message  # names the bad value and the choices


def test_404_unknown_route(client):
    assert "/nope" in error(client.get("/nope"), 404, "not_found")


def test_405_wrong_method(client):
    error(client.get("/embed"), 405, "method_not_allowed")


# -- 413 -------------------------------------------------------------------------------------------------------------
def test_413_declared_length(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app(names=[DEFAULT], payload_limit=100)) as c:
        r = c.post("/embed", json={"inputs": "x" * 200})
        assert "100" in error(r, 413, "payload_too_large")
        assert c.post("/embed", json={"inputs": "small"}).status_code == 200


def test_413_chunked_body_without_length(make_app, concurrently):
    async def body():
        yield b'{"inputs": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    async def go(c):
        return await c.post("/embed", content=body(), headers={"content-type": "application/json"})

    r = concurrently(make_app(names=[DEFAULT], payload_limit=100), go)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    error(r, 413, "payload_too_large")


# -- 422 -------------------------------------------------------------------------------------------------------------
def test_422_empty_inputs(client):
    assert "empty" in error(client.post("/embed", json={"inputs": []}), 422, "invalid_input")
    error(client.post("/rerank", json={"query": "q", "texts": []}), 422, "invalid_input")


def test_422_too_many_inputs(client):
    r = client.post("/embed", json={"inputs": ["x"] * 257})  # default --max-client-batch-size 256
    assert "257" in error(r, 422, "too_many_inputs") and "256" in r.json()["error"]


def test_422_wrong_type(client):
    message = error(client.post("/embed", json={"inputs": 5}), 422, "invalid_input")
    assert message.startswith("invalid request: inputs:") and "int" in message


def test_422_missing_field(client):
    assert "inputs: field required" in error(client.post("/embed", json={"text": "x"}), 422, "invalid_input")


@pytest.mark.parametrize("body", [
    {"inputs": ["a", "b", "c"], "model": "classifier"},  # a single input is a text or a pair
    {"inputs": [["a", "b", "c"]], "model": "classifier"},
])
def test_422_bad_predict_inputs(client, body):
    error(client.post("/predict", json=body), 422, "invalid_input")


@pytest.mark.parametrize(("path", "body", "needle"), [
    ("/embed", {"inputs": "x", "dimensions": 10_000}, "dimensions"),
    ("/embed", {"inputs": "x", "truncation_direction": "left"}, "left"),
    ("/embed", {"inputs": "x", "prompt_name": "query"}, "prompt_name"),
    ("/embed", {"inputs": [10**9]}, "vocabulary"),
    ("/embed", {"inputs": "x", "pooling": "median"}, "pooling"),
    ("/decode", {"ids": [-1]}, "vocabulary"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
])
def test_422_bad_values(client, path, body, needle):
    assert needle in error(client.post(path, json=body), 422, "invalid_input")


# -- 429 overloaded --------------------------------------------------------------------------------------------------
def test_429_overloaded_request_larger_than_the_queue(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app(names=[DEFAULT], max_concurrent_requests=2)) as c:
        r = c.post("/embed", json={"inputs": ["a", "b", "c"]})
        error(r, 429, "overloaded")
        assert int(r.headers["retry-after"]) >= 1
        assert c.post("/embed", json={"inputs": ["a", "b"]}).status_code == 200


def test_429_overloaded_under_concurrent_load(make_app, concurrently):
    async def go(c):
        return await asyncio.gather(*(c.post("/embed", json={"inputs": [LONG, LONG]}) for _ in range(12)))

    responses = concurrently(make_app(names=[DEFAULT], max_concurrent_requests=4), go)
    codes = sorted(r.status_code for r in responses)
    assert set(codes) == {200, 429}, codes
    for r in responses:
        if r.status_code == 429:
            error(r, 429, "overloaded")
            assert "retry-after" in r.headers


# -- 504 -------------------------------------------------------------------------------------------------------------
def test_504_request_timeout(make_app):
    from fastapi.testclient import TestClient

    with TestClient(make_app(names=[DEFAULT], request_timeout=0.001)) as c:
        assert "0.001" in error(c.post("/embed", json={"inputs": [LONG] * 4}), 504, "timeout")


# -- 500 -------------------------------------------------------------------------------------------------------------
class Broken(Backend):
    async def embed(self, *args, **kwargs):
        raise RuntimeError("secret detail from deep inside")


def test_500_bug_is_logged_not_shown(make_app, caplog):
    from fastapi.testclient import TestClient

    with TestClient(make_app(Broken, names=[DEFAULT]), raise_server_exceptions=False) as c, \
            caplog.at_level(logging.ERROR, logger="robertaops.serving"):
        r = c.post("/embed", json={"inputs": "x"})
        assert r.json() == {"error": "internal error", "error_type": "internal"}
        assert r.status_code == 500
        assert "secret" not in r.text and "Traceback" not in r.text
    assert any("secret detail" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)
