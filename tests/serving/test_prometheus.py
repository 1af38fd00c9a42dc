"""Metrics: what is observed shows up in render() with the right names, labels and bucket counts; registries are
per instance (never the global one)."""

from __future__ import annotations

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from robertaops.serving.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} from the rendered exposition, parsed as Prometheus would."""
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def value(metrics: Metrics, name: str, **labels) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_request_histogram_labels_and_buckets():
    m = Metrics()
    m.observe_request("/embed", "minilm", 200, 0.004)
    m.observe_request("/embed", "minilm", 200, 0.3)
    m.observe_request("/embed", "minilm", 503, 12.0)
    ok = {"route": "/embed", "model": "minilm", "status": "200"}
    name = "robertaops_request_duration_seconds"
    assert value(m, f"{name}_count", **ok) == 2
    assert value(m, f"{name}_sum", **ok) == pytest.approx(0.304)
    assert value(m, f"{name}_bucket", le="0.001", **ok) == 0
    assert value(m, f"{name}_bucket", le="0.005", **ok) == 1
    assert value(m, f"{name}_bucket", le="0.25", **ok) == 1
    assert value(m, f"{name}_bucket", le="0.5", **ok) == 2
    assert value(m, f"{name}_bucket", le="+Inf", **ok) == 2
    # The status label is the numeric code as a string, so alerts can match status=~"5..".
    assert value(m, f"{name}_count", route="/embed", model="minilm", status="503") == 1
    assert value(m, f"{name}_bucket", le="10.0", route="/embed", model="minilm", status="503") == 0
    assert value(m, f"{name}_bucket", le="30.0", route="/embed", model="minilm", status="503") == 1


def test_latency_buckets_span_1ms_to_60s():
    m = Metrics()
    m.observe_request("/embed", "minilm", 200, 0.01)
    les = [dict(labels)["le"] for (name, labels) in samples(m) if name.endswith("_bucket")]
    assert les[0] == "0.001" and les[-2:] == ["60.0", "+Inf"]


def test_batch_observations():
    m = Metrics()
    m.observe_batch("minilm", size=3, tokens=48, queue_seconds=0.002, tokenize_seconds=0.0005, inference_seconds=0.04)
    m.observe_batch("minilm", size=1024, tokens=65536, queue_seconds=0.5, tokenize_seconds=0.01, inference_seconds=9)
    assert value(m, "robertaops_batch_size_count", model="minilm") == 2
    assert value(m, "robertaops_batch_size_bucket", le="2.0", model="minilm") == 0
    assert value(m, "robertaops_batch_size_bucket", le="4.0", model="minilm") == 1
    assert value(m, "robertaops_batch_size_bucket", le="1024.0", model="minilm") == 2
    assert value(m, "robertaops_batch_tokens_bucket", le="16.0", model="minilm") == 0
    assert value(m, "robertaops_batch_tokens_bucket", le="64.0", model="minilm") == 1
    assert value(m, "robertaops_batch_tokens_bucket", le="65536.0", model="minilm") == 2
    assert value(m, "robertaops_batch_tokens_sum", model="minilm") == 48 + 65536
    assert value(m, "robertaops_queue_duration_seconds_sum", model="minilm") == pytest.approx(0.502)
    assert value(m, "robertaops_tokenize_duration_seconds_bucket", le="0.001", model="minilm") == 1
    assert value(m, "robertaops_inference_duration_seconds_bucket", le="0.05", model="minilm") == 1
    assert value(m, "robertaops_inference_duration_seconds_bucket", le="10.0", model="minilm") == 2


def test_batch_without_tokenize_time():
    """The backend tokenizes per request, before batching, and observes tokenize_duration itself."""
    m = Metrics()
    m.observe_batch("minilm", size=2, tokens=32, queue_seconds=0.001, tokenize_seconds=None, inference_seconds=0.01)
    assert value(m, "robertaops_batch_size_count", model="minilm") == 1
    assert value(m, "robertaops_inference_duration_seconds_count", model="minilm") == 1
    assert value(m, "robertaops_tokenize_duration_seconds_count", model="minilm") is None


def test_gauges_counter_and_model_info():
    m = Metrics()
    assert value(m, "robertaops_ready") == 0  # not ready until the app says so
    m.ready.set(1)
    m.queue_size.labels(model="minilm").set(7)
    m.failures.labels(error_type="timeout").inc()
    m.failures.labels(error_type="timeout").inc()
    m.failures.labels(error_type="overloaded").inc()
    m.set_model_info("minilm", "3", "ab" * 32)
    assert value(m, "robertaops_ready") == 1
    assert value(m, "robertaops_queue_size", model="minilm") == 7
    assert value(m, "robertaops_failures_total", error_type="timeout") == 2
    assert value(m, "robertaops_failures_total", error_type="overloaded") == 1
    assert value(m, "robertaops_model_info", model="minilm", version="3", sha256="ab" * 32) == 1


def test_every_name_is_prefixed():
    m = Metrics()
    m.observe_request("/embed", "minilm", 200, 0.01)
    m.observe_batch("minilm", 1, 16, 0, 0, 0)
    m.failures.labels(error_type="internal").inc()
    names = {name for name, _ in samples(m)}
    assert names and all(name.startswith("robertaops_") for name in names)


def test_instances_do_not_share_state():
    a, b = Metrics(), Metrics()
    assert a.registry is not b.registry and a.registry is not prometheus_client.REGISTRY
    a.observe_request("/embed", "minilm", 200, 0.01)
    a.failures.labels(error_type="timeout").inc()
    a.ready.set(1)
    assert value(a, "robertaops_request_duration_seconds_count", route="/embed", model="minilm", status="200") == 1
    assert value(b, "robertaops_request_duration_seconds_count", route="/embed", model="minilm", status="200") is None
    assert value(b, "robertaops_failures_total", error_type="timeout") is None
    assert value(b, "robertaops_ready") == 0
    # Nothing leaked into the process-wide registry either.
    assert prometheus_client.REGISTRY.get_sample_value("robertaops_ready") is None
