"""OpenTelemetry: with --otlp-endpoint set, each request yields task, tokenize, queue and inference spans, exported
over OTLP/HTTP to a collector (here a tiny HTTP server on 127.0.0.1 that decodes what it receives)."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from robertaops.serving.backend import Backend
from robertaops.serving.tracing import Tracer
from robertaops.settings import Settings

pytest.importorskip("opentelemetry.sdk")


class Collector(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Collector.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def collector():
    Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def exported_spans() -> list:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for path, body in Collector.received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                spans.extend(scope.spans)
    return spans


def test_request_spans_reach_the_collector(collector, default_model_dir):
    import robertaops as ro

    model = ro.load(default_model_dir)

    async def main():
        backend = Backend(Settings(otlp_endpoint=collector), models={"mini": model})
        await backend.start()
        await asyncio.gather(backend.embed("mini", ["one text"]), backend.embed("mini", ["another", "and more"]))
        await backend.stop()  # flushes the exporter

    asyncio.run(main())
    spans = exported_spans()
    roots = [s for s in spans if s.name == "robertaops.embed"]
    assert len(roots) == 2
    for root in roots:
        children = {s.name: s for s in spans if s.parent_span_id == root.span_id}
        assert set(children) == {"tokenize", "queue", "inference"}
        assert children["queue"].end_time_unix_nano <= children["inference"].start_time_unix_nano + 1
        assert root.start_time_unix_nano <= children["tokenize"].start_time_unix_nano
        assert all(s.trace_id == root.trace_id for s in children.values())


def test_tracing_off_is_a_no_op():
    tracer = Tracer(None)
    with tracer.span("x") as context:
        assert context is None
    tracer.record("y", None, 0.0, 1.0)
    tracer.shutdown()
    assert not tracer.enabled
