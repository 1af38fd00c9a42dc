"""Prometheus metrics for the server: one `Metrics` object per app, owning its own CollectorRegistry.

Never the global registry: two apps in one process (tests, canary + stable) must not share series, and
`render()` exposes exactly what this app recorded. Every name is prefixed `robertaops_` and every histogram has
explicit buckets, so dashboards and alerts (deploy/) can rely on them; tests/deploy checks they do not drift.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# The classic text format (what generate_latest writes); every Prometheus version scrapes it. prometheus-client's
# CONTENT_TYPE_LATEST says version=1.0.0 in recent releases, which older scrapers and proxies do not all know.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds, 1 ms (a short input on a warm model) .. 60 s (past the default 30 s request timeout).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Inputs per forward pass, 1 .. 1024 (powers of two: the batcher's limits are usually set to one).
BATCH_SIZE_BUCKETS = tuple(float(2**i) for i in range(11))
# Padded tokens per forward pass, 16 .. 65536.
BATCH_TOKEN_BUCKETS = tuple(float(2**i) for i in range(4, 17))
# Cosine of two versions' embeddings: the interesting part is just below 1.
COSINE_BUCKETS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, 1.0)


class Metrics:
    """All server metrics. Attribute names are part of the contract with the app, batcher and deploy/ files."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_duration = Histogram(
            "robertaops_request_duration_seconds", "HTTP request latency, by route, model and HTTP status code.",
            ["route", "model", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_duration = Histogram(
            "robertaops_queue_duration_seconds", "Longest wait of an input in a batch before its forward pass.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.tokenize_duration = Histogram(
            "robertaops_tokenize_duration_seconds", "Time of one tokenizer call (a request's inputs, or a batch's).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference_duration = Histogram(
            "robertaops_inference_duration_seconds", "Time of one forward pass (one batch).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(
            "robertaops_batch_size", "Inputs per forward pass.",
            ["model"], buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram(
            "robertaops_batch_tokens", "Padded tokens (rows x longest row) per forward pass.",
            ["model"], buckets=BATCH_TOKEN_BUCKETS, registry=r)
        self.queue_size = Gauge(
            "robertaops_queue_size", "Inputs waiting in the batcher queue.", ["model"], registry=r)
        self.failures = Counter(
            "robertaops_failures_total", "Failed requests, by error_type (the stable type of robertaops.errors).",
            ["error_type"], registry=r)
        self.model_info = Gauge(
            "robertaops_model_info", "Loaded model: always 1; the labels carry its name, version and weights sha256.",
            ["model", "version", "sha256"], registry=r)
        self.ready = Gauge("robertaops_ready", "1 once every model is loaded and warmed up, else 0.", registry=r)
        # Online drift (monitoring/online.py), per served model with a fitted reference: a rolling window of recent
        # inputs compared with the reference. statistic: centroid_distance (cosine distance of embedding centroids),
        # length_psi, label_psi (population stability index of input lengths / predicted labels).
        self.drift_score = Gauge(
            "robertaops_drift_score", "Drift of the recent inputs from the model's reference, by statistic.",
            ["model", "statistic"], registry=r)
        self.drift_window = Gauge(
            "robertaops_drift_window_inputs", "Inputs in the rolling window the drift scores are computed on.",
            ["model"], registry=r)
        # Cascades (robertaops/cascade.py): the share escalated is escalations / inputs.
        self.cascade_inputs = Counter(
            "robertaops_cascade_inputs_total", "Inputs classified through a cascade.", ["cascade"], registry=r)
        self.cascade_escalations = Counter(
            "robertaops_cascade_escalations_total", "Cascade inputs the small model was unsure of, sent to the large.",
            ["cascade"], registry=r)
        # Rollouts (serving/rollouts.py): `model` is the name clients ask for, `version` the checkpoint that ran,
        # `role` primary or candidate (canary or shadow).
        self.rollout_requests = Counter(
            "robertaops_rollout_requests_total", "Requests under a rollout, by served version, role and outcome.",
            ["model", "version", "role", "outcome"], registry=r)
        self.rollout_duration = Histogram(
            "robertaops_rollout_request_duration_seconds", "Backend time of requests under a rollout, by role.",
            ["model", "version", "role"], buckets=LATENCY_BUCKETS, registry=r)
        self.rollout_active = Gauge(
            "robertaops_rollout_active", "1 while a rollout routes or mirrors traffic; 0 once stopped or rolled back.",
            ["model", "candidate", "mode"], registry=r)
        self.rollbacks = Counter(
            "robertaops_rollout_rollbacks_total", "Automatic rollbacks (candidate over its error or latency bound).",
            ["model", "candidate"], registry=r)
        self.shadow_agreement = Gauge(
            "robertaops_shadow_agreement_ratio", "Share of shadowed inputs where the candidate gave the same answer.",
            ["model", "candidate"], registry=r)
        self.shadow_cosine = Histogram(
            "robertaops_shadow_cosine", "Cosine between primary and candidate embeddings of shadowed inputs.",
            ["model", "candidate"], buckets=COSINE_BUCKETS, registry=r)

    def observe_request(self, route: str, model: str, status: int | str, seconds: float) -> None:
        """One finished HTTP request; `status` is the numeric HTTP code (alerts match `status=~"5.."`)."""
        self.request_duration.labels(route=route, model=model, status=str(status)).observe(seconds)

    def observe_batch(self, model: str, size: int, tokens: int, queue_seconds: float,
                      tokenize_seconds: float | None, inference_seconds: float) -> None:
        """One forward pass: its inputs, padded tokens, and where its time went. `tokenize_seconds` is None when
        tokenization happened per request before batching (then observe `tokenize_duration` there instead)."""
        self.batch_size.labels(model=model).observe(size)
        self.batch_tokens.labels(model=model).observe(tokens)
        self.queue_duration.labels(model=model).observe(queue_seconds)
        if tokenize_seconds is not None:
            self.tokenize_duration.labels(model=model).observe(tokenize_seconds)
        self.inference_duration.labels(model=model).observe(inference_seconds)

    def observe_rollout(self, model: str, version: str, role: str, ok: bool, seconds: float) -> None:
        self.rollout_requests.labels(model=model, version=version, role=role, outcome="ok" if ok else "error").inc()
        self.rollout_duration.labels(model=model, version=version, role=role).observe(seconds)

    def set_model_info(self, model: str, version: str, sha256: str) -> None:
        """Publish a loaded model; join on it in PromQL (`* on(model) group_left(version) robertaops_model_info`)."""
        self.model_info.labels(model=model, version=version, sha256=sha256).set(1)

    def remove_model_info(self, model: str, version: str, sha256: str) -> None:
        """An unloaded model leaves the info gauge, so dashboards stop listing it."""
        try:
            self.model_info.remove(model, version, sha256)
        except KeyError:
            pass

    def render(self) -> tuple[bytes, str]:
        """The text exposition of this registry and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE
