"""OpenTelemetry traces, opt-in: spans for each request's tokenize, queue and inference steps, sent over OTLP/HTTP.

With no `--otlp-endpoint` every call here is a no-op and opentelemetry is never imported. Queue and inference
happen in the batcher's worker, for many requests at once, so those spans are recorded after the fact from the
batcher's timestamps, each under the span of the request its input came from.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidInputError

_EPOCH_OFFSET_NS = time.time_ns() - time.monotonic_ns()  # monotonic seconds -> epoch nanoseconds


_NO_SPAN = contextlib.nullcontext()


def _epoch_ns(monotonic_seconds: float) -> int:
    return int(monotonic_seconds * 1e9) + _EPOCH_OFFSET_NS


class Tracer:
    def __init__(self, endpoint: str | None, service_name: str = "robertaops"):
        self.enabled = bool(endpoint)
        self._provider = self._tracer = None
        if not self.enabled:
            return
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise InvalidInputError(
                "--otlp-endpoint needs OpenTelemetry: pip install 'robertaops[otel]'"
            ) from exc

        url = endpoint.rstrip("/")
        url = url if url.endswith("/v1/traces") else url + "/v1/traces"
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        self._tracer = self._provider.get_tracer("robertaops.serving")

    def span(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
        """A live span around a block; yields its context (None when tracing is off) for later child spans."""
        # Off: one shared do-nothing context, not a generator per call (every request opens two spans).
        return self._live_span(name, attributes) if self.enabled else _NO_SPAN

    @contextlib.contextmanager
    def _live_span(self, name: str, attributes: dict[str, Any]) -> Iterator[Any]:
        from opentelemetry import trace

        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield trace.set_span_in_context(span)

    def record(self, name: str, parent: Any, start: float, end: float, **attributes: Any) -> None:
        """A span measured elsewhere: `start`/`end` in time.monotonic() seconds, under `parent` (a span context)."""
        if not self.enabled or parent is None:
            return
        span = self._tracer.start_span(name, context=parent, start_time=_epoch_ns(start), attributes=attributes)
        span.end(end_time=_epoch_ns(end))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.force_flush()
            self._provider.shutdown()
