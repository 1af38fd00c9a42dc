"""Operations: health probes, readiness, /metrics, request ids and timing headers, the JSON access log, OpenAPI,
and `robertaops serve` building its settings from flags over ROBERTAOPS_* variables."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from robertaops import cli
from robertaops.serving.backend import Backend

DEFAULT = "all-MiniLM-L6-v2"


def test_health_probes(client):
    assert client.get("/health").status_code == 200
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["models"][0] == DEFAULT


class NeverReady(Backend):
    async def start(self) -> None:
        await super().start()
        self.ready = False


def test_workers_share_the_threads_while_serving_and_give_them_back(make_app, monkeypatch):
    import torch

    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    before = torch.get_num_threads()
    app = make_app(names=["all-MiniLM-L6-v2"])
    with TestClient(app) as c:
        assert os.environ["TOKENIZERS_PARALLELISM"] == "false"  # on a CPU the cores are the workers'
        backend = app.state.backend
        assert backend.workers == (2 if before >= 2 else 1)  # the CPU default
        assert torch.get_num_threads() == max(1, before // backend.workers)
        batcher = backend.batchers["all-MiniLM-L6-v2"]
        assert len(batcher._worker._threads) == backend.workers  # all started (and warmed up) before traffic
        assert c.post("/embed", json={"inputs": ["a", "b"]}).status_code == 200
    assert torch.get_num_threads() == before
    assert "TOKENIZERS_PARALLELISM" not in os.environ


def test_int8_model_served_by_two_workers_at_once_matches_the_engine(default_model_dir):
    """One request of 16 inputs on an idle two-worker server runs as two batches at once: the int8 kernels (compiled,
    releasing the GIL) run on both threads together, and every vector matches the engine's own."""
    import numpy as np

    import robertaops as ro
    from robertaops.model.quantize import int8_supported
    from robertaops.serving.app import create_app
    from robertaops.serving.metrics import Metrics
    from robertaops.settings import Settings

    if not int8_supported():
        pytest.skip("this torch build has no CPU int8 matmul")
    m8 = ro.load(default_model_dir, dtype="int8")
    texts = [f"sentence number {i} about {'a long walk through the hills ' * (i % 4)}" for i in range(16)]
    settings = Settings(models=["m8"], model_workers=2)
    app = create_app(settings, Backend(settings, models={"m8": m8}, metrics=Metrics()))
    with TestClient(app) as c:
        served = np.array(c.post("/embed", json={"inputs": texts}).json())
        batches = c.get("/metrics").text
        info = c.get("/info").json()
    assert info["model_dtype"] == "int8" and info["matmul"] == m8.matmul in ("amx", "int_mm")
    assert info["int8_layer"] == m8.int8_layer in ("aot", "aot, partly eager", "torch.compile", "eager")
    alone = m8.embed(texts)
    # Both normalised. The batches differ, so float rounding differs, and now and then that moves a value across an
    # int8 rounding step, which attention can amplify (one 6-token input: cosine 0.9958, the same distance each
    # layout has from fp32). Attention in bf16 (CPUs with AVX512-BF16 or AMX) rounds at 4e-3 instead of 1e-7: the
    # median went from > 0.99999 to 0.9997 on a Xeon with AMX. A race between the workers would give unrelated
    # vectors.
    cosines = (served * alone).sum(1)
    assert cosines.min() > 0.99 and np.median(cosines) > 0.999, cosines
    assert re.search(r'robertaops_batch_size_count\{model="m8"\} ([0-9.]+)', batches).group(1) == "2.0"  # split


def test_503_until_ready(make_app):
    with TestClient(make_app(NeverReady, names=[DEFAULT])) as c:
        assert c.get("/health/live").status_code == 200
        for r in (c.get("/health"), c.get("/health/ready"), c.post("/embed", json={"inputs": "x"})):
            assert r.status_code == 503 and r.json()["error_type"] == "not_ready"


def test_metrics(client):
    client.post("/embed", json={"inputs": "x"})
    client.post("/embed", json={"inputs": "x", "model": "nope"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'robertaops_request_duration_seconds_count{model="all-MiniLM-L6-v2",route="/embed",status="200"}' in text
    assert 'route="/embed",status="404"' in text
    assert 'robertaops_failures_total{error_type="model_not_found"}' in text
    assert "robertaops_ready 1.0" in text


def test_unmatched_routes_share_one_metrics_label(client):
    client.get("/does-not-exist-1")
    client.get("/does-not-exist-2")
    text = client.get("/metrics").text
    assert 'route="unmatched"' in text and "does-not-exist" not in text


def test_request_id_and_timing_headers(client):
    r = client.post("/embed", json={"inputs": ["abc", "de"]}, headers={"x-request-id": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    assert int(r.headers["x-total-time"]) >= int(r.headers["x-compute-time"]) >= 0
    assert r.headers["x-compute-characters"] == "5" and r.headers["x-compute-type"] == "cpu"
    generated = client.post("/embed", json={"inputs": "x"}, headers={"x-request-id": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert generated.headers["x-request-id"] != client.get("/health").headers["x-request-id"]


def test_access_log_hashes_inputs(client, caplog):
    with caplog.at_level(logging.INFO, logger="robertaops.access"):
        client.post("/embed", json={"inputs": ["secret text"]}, headers={"x-request-id": "log-1"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "robertaops.access"]
    line = next(x for x in lines if x["request_id"] == "log-1")
    assert line["route"] == "/embed" and line["model"] == DEFAULT and line["status"] == 200
    assert line["inputs_sha256"] == [hashlib.sha256(b"secret text").hexdigest()]
    assert "secret text" not in caplog.text and line["duration_ms"] > 0


def test_access_log_can_log_inputs_and_errors(make_app, caplog):
    with TestClient(make_app(names=[DEFAULT], log_inputs=True)) as c, \
            caplog.at_level(logging.INFO, logger="robertaops.access"):
        c.post("/embed", json={"inputs": ["visible"]})
        c.post("/embed", json={"inputs": []})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "robertaops.access"]
    assert lines[0]["inputs"] == ["visible"]
    assert lines[1]["status"] == 422 and lines[1]["error_type"] == "invalid_input"


def test_json_formatter():
    from robertaops.serving.logging import JSONFormatter

    record = logging.LogRecord("robertaops.access", logging.INFO, "", 0, "request", None, None)
    record.access = {"status": 200, "route": "/embed"}  # as log_access passes it
    out = json.loads(JSONFormatter().format(record))
    assert out["status"] == 200 and out["route"] == "/embed" and out["level"] == "info" and "message" not in out
    plain = logging.LogRecord("robertaops.serving", logging.WARNING, "", 0, "hello %s", ("x",), None)
    assert json.loads(JSONFormatter().format(plain))["message"] == "hello x"


def test_json_formatter_timestamps_each_record_at_its_own_time():
    """The formatted second is reused between records of the same second, never across seconds."""
    from robertaops.serving.logging import JSONFormatter

    formatter = JSONFormatter()
    stamps = []
    for created in (1700000000.25, 1700000000.75, 1700000001.5, 1699999999.0):
        record = logging.LogRecord("robertaops", logging.INFO, "", 0, "m", None, None)
        record.created, record.msecs = created, (created % 1) * 1000
        stamps.append(json.loads(formatter.format(record))["ts"])
    assert stamps == ["2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.750Z", "2023-11-14T22:13:21.500Z",
                      "2023-11-14T22:13:19.000Z"]


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/embed", "/predict", "/rerank", "/tokenize", "/decode", "/similarity", "/info", "/ner",
                 "/fill-mask", "/v1/embeddings", "/v1/models", "/health", "/metrics", "/admin/models"):
        assert path in spec["paths"], path
    assert "422" in spec["paths"]["/embed"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_create_app_loads_nothing_until_started(monkeypatch):
    from robertaops.serving import app as app_module
    from robertaops.settings import Settings

    app = app_module.create_app(Settings(models=["/does/not/exist"]))
    assert app.state.backend is None  # models load in the lifespan, not in the factory


def test_a_model_the_server_loads_itself_runs_without_its_plain_weights(default_model_dir):
    """The server only runs inference on the models it loads, so it drops the plain copies of packed weights; the
    vectors stay the engine's. (Models handed to the Backend, as most tests here do, are left alone.)"""
    import numpy as np

    import robertaops as ro
    from robertaops.model.packed import PackedLinear
    from robertaops.serving.app import create_app
    from robertaops.settings import Settings

    texts = ["one short input", "and another, a little longer, so that the batch has padding"]
    # Layers not traced (the default off Intel CPUs): traced ones run on the plain weights (tests/model/test_traced.py)
    app = create_app(Settings(models=[f"m={default_model_dir}"], model_workers=1, trace_layers=False))
    with TestClient(app) as c:
        served = np.array(c.post("/embed", json={"inputs": texts}).json())
        linears = [m for m in app.state.backend.models["m"].runner.model.modules() if isinstance(m, PackedLinear)]
        assert linears and all(m._plain_dropped for m in linears)
    assert np.allclose(served, ro.load(default_model_dir).embed(texts), atol=1e-6)


# -- robertaops serve ------------------------------------------------------------------------------------------------
@pytest.fixture
def captured(monkeypatch):
    import uvicorn

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    for name in ("ROBERTAOPS_PORT", "ROBERTAOPS_MAX_BATCH_TOKENS", "ROBERTAOPS_MODELS", "ROBERTAOPS_LOG_INPUTS"):
        monkeypatch.delenv(name, raising=False)
    yield seen
    for name in ("robertaops", "uvicorn", "uvicorn.error"):  # undo configure(): let pytest capture logs again
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            handler.close()
        logger.handlers.clear()
        logger.propagate = True


def test_serve_flags_override_env(captured, monkeypatch):
    monkeypatch.setenv("ROBERTAOPS_PORT", "9999")
    monkeypatch.setenv("ROBERTAOPS_MAX_BATCH_TOKENS", "1024")
    result = CliRunner().invoke(cli.app, ["serve", "--max-batch-tokens", "4096", "--dtype", "bfloat16",
                                          "--log-inputs", "--host", "0.0.0.0", "-m", "a=/x", "-m", "b=/y"])
    assert result.exit_code == 0, result.output
    settings = captured["app"].state.settings
    assert captured["port"] == 9999 and captured["host"] == "0.0.0.0"
    assert settings.max_batch_tokens == 4096 and settings.dtype == "bfloat16" and settings.log_inputs is True
    assert settings.model_specs() == [("a", "/x"), ("b", "/y")]


def test_serve_repeated_models(captured):
    result = CliRunner().invoke(cli.app, ["serve", "-m", "emb=/m1", "-m", "clf=/m2", "--port", "1234"])
    assert result.exit_code == 0, result.output
    assert captured["app"].state.settings.model_specs() == [("emb", "/m1"), ("clf", "/m2")]
    assert captured["port"] == 1234


def test_serve_bad_settings_exit_2(captured, monkeypatch):
    result = CliRunner().invoke(cli.app, ["serve", "-m", "a=/x", "-m", "a=/y"])
    assert result.exit_code == 2 and "twice" in result.output
    monkeypatch.setenv("ROBERTAOPS_MAX_BATCH_REQUESTS", "many")
    result = CliRunner().invoke(cli.app, ["serve"])
    assert result.exit_code == 2 and "max_batch_requests" in result.output


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread niceness is Linux's")
def test_lower_loop_priority_renices_only_the_calling_thread():
    from robertaops.serving.app import lower_loop_priority

    seen = {}

    def loop_thread():
        before = os.getpriority(os.PRIO_PROCESS, 0)  # on Linux, 0 = the calling thread
        lower_loop_priority(5)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, 0) - before

    worker = threading.Thread(target=loop_thread)
    worker.start()
    worker.join()
    assert seen["delta"] == min(5, 19 - (os.getpriority(os.PRIO_PROCESS, 0)))
    main_before = os.getpriority(os.PRIO_PROCESS, 0)
    lower_loop_priority(0)  # off
    assert os.getpriority(os.PRIO_PROCESS, 0) == main_before
