"""Backend: the loaded models behind the server, each with its own cross-request batcher. No HTTP in here.

Every coroutine below turns a request into one queue entry per input, keyed by (model, task, parameters) so that
only compatible inputs share a forward pass, and awaits their results. Token counts for the budget come from the
real tokenizer, run in a thread so the event loop never tokenizes; the pipelines themselves (the same ones the
Python API and the CLI use) run in each batcher's worker thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..api import Model, load
from ..cascade import check_compatible, merge_escalated, unsure
from ..errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    UnsupportedTaskError,
    choices,
)
from ..pipelines.rerank import cross_encoder_scores, is_cross_encoder, ranked
from ..pipelines.runner import default_batch_tokens
from ..settings import Settings
from .batcher import Batcher, BatchStats
from .rollouts import Rollout, Rollouts, RolloutSpec, agreement
from .tracing import Tracer

log = logging.getLogger("robertaops.serving")



@dataclass
class RequestInfo:
    """What the HTTP layer tells the backend about the current request, and what the backend tells it back. Set in a
    context variable (`REQUEST`) by whoever calls, so the task API stays free of this bookkeeping."""

    key: str | None = None  # the API key's name: a canary's stickiness
    headers: Mapping[str, str] | None = None  # request headers (lower-case names): a canary's stickiness
    timings: dict[str, float] = field(default_factory=dict)  # seconds of tokenization, queue, inference; tokens
    served_by: str | None = None  # the model that answered, when a canary sent the request to the candidate


REQUEST: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar("robertaops_request", default=None)
# Errors that are the client's doing: they say nothing about a candidate's health.
CLIENT_ERRORS = (InvalidInputError, UnsupportedTaskError)


def _run(model: Model, key: Hashable, payloads: list[Any]) -> list[Any]:
    """Worker thread: one batch of one task through the model's pipeline."""
    task, params = key[1], dict(key[2])
    if task == "embed":
        return list(model.embed(payloads, **params))
    if task == "embed_all":
        return model.embed_all(payloads, **params)
    if task == "classify":
        return model.classify(payloads, **params)
    if task == "ner":
        return model.ner(payloads, **params)
    if task == "fill_mask":
        return model.fill_mask(payloads, **params)
    raise ValueError(f"unknown task {task!r}")


class Backend:
    def __init__(self, settings: Settings, models: dict[str, Model] | None = None, metrics: Any = None):
        self.settings = settings
        self.metrics = metrics
        if models is None:
            models = {name: load(target, device=settings.device, dtype=settings.dtype, max_length=settings.max_length,
                                 max_batch_tokens=settings.max_batch_tokens)
                      for name, target in settings.model_specs()}
        if not models:
            raise ModelNotFoundError("the server needs at least one model")
        self.models = dict(models)
        self.names = list(self.models)
        self.batchers: dict[str, Batcher] = {}
        self.tracer = Tracer(settings.otlp_endpoint)
        self.rollouts = Rollouts()
        self.cascades: dict[str, dict] = {}
        for spec in settings.cascades:
            self.add_cascade(**spec)
        self._shadows: set[asyncio.Task] = set()
        self.ready = False

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        for name, model in self.models.items():
            await self._start_model(name, model)
        for spec in self.settings.rollouts:
            try:
                self.start_rollout(RolloutSpec(**spec))
            except TypeError as exc:  # an unknown field
                raise InvalidInputError(f"rollout {spec}: {exc}") from None
        self.ready = True
        if self.metrics is not None:
            self.metrics.ready.set(1)

    async def _start_model(self, name: str, model: Model) -> None:
        budget = self.settings.max_batch_tokens or default_batch_tokens(self.settings.device)
        batcher = Batcher(
            lambda key, payloads, m=model: _run(m, key, payloads),
            max_batch_tokens=budget, max_batch_requests=self.settings.max_batch_requests,
            max_queued=self.settings.max_concurrent_requests, max_entry_tokens=model.max_length,
            on_batch=lambda stats, n=name: self._observe(n, stats),
        )
        batcher.start()
        await batcher.call(lambda m=model: m.embed(["warm-up"]))  # a real forward before it takes traffic
        self.batchers[name] = batcher
        if self.metrics is not None:
            self.metrics.set_model_info(name, model.name, model.weights_sha256 or "")

    async def add_model(self, name: str, target: str) -> dict:
        """Load `target` (a path or hub id) in a thread, warm it up, then route requests for `name` to it."""
        if name in self.models:
            raise ConflictError(f"a model named {name!r} is already served; unload it first")
        s = self.settings
        model = await asyncio.to_thread(load, target, device=s.device, dtype=s.dtype, max_length=s.max_length,
                                        max_batch_tokens=s.max_batch_tokens)
        if name in self.models:  # another request loaded the same name while this one was loading
            raise ConflictError(f"a model named {name!r} is already served; unload it first")
        await self._start_model(name, model)
        self.models[name] = model
        self.names.append(name)
        log.info("loaded model %s from %s", name, target)
        return model.info()

    async def replace_model(self, name: str, target: str) -> dict:
        """Serve `target` under an existing `name` without dropping a request: load and warm it up beside the old
        one, switch new requests to it, then let the old one finish what it holds (registry aliases, --watch)."""
        old_model = self.model(name)
        s = self.settings
        model = await asyncio.to_thread(load, target, device=s.device, dtype=s.dtype, max_length=s.max_length,
                                        max_batch_tokens=s.max_batch_tokens)
        old_batcher = self.batchers[name]
        await self._start_model(name, model)  # warms up, then registers the new batcher under `name`
        self.models[name] = model
        if all(b is not old_batcher for b in self.batchers.values()):
            await self._drain(old_batcher)
        if self.metrics is not None:
            self.metrics.remove_model_info(name, old_model.name, old_model.weights_sha256 or "")
            self.metrics.set_model_info(name, model.name, model.weights_sha256 or "")
        log.info("replaced model %s: %s -> %s", name, old_model.name, model.name)
        return model.info()

    async def remove_model(self, name: str, drain_seconds: float = 30.0) -> None:
        """Stop routing to `name`, let its queued and running inputs finish (up to `drain_seconds`), then free it."""
        self.model(name)
        if len(self.models) == 1:
            raise ConflictError(f"{name!r} is the only model served; load another before unloading it")
        busy = self.rollouts.involving(name)
        if busy:
            raise ConflictError(f"{name!r} is in the {busy[0].spec.mode} of {busy[0].spec.model!r}: stop it first")
        self.names.remove(name)
        model = self.models.pop(name)
        batcher = self.batchers.pop(name)
        if all(b is not batcher for b in self.batchers.values()):  # a promoted model's batcher serves two names
            await self._drain(batcher, drain_seconds)
        if self.metrics is not None:
            self.metrics.remove_model_info(name, model.name, model.weights_sha256 or "")
        log.info("unloaded model %s", name)

    async def stop(self) -> None:
        self.ready = False
        for task in list(self._shadows):
            task.cancel()
        for batcher in {id(b): b for b in self.batchers.values()}.values():
            await batcher.stop()
        self.batchers.clear()
        self.tracer.shutdown()

    def model(self, name: str | None) -> Model:
        if name is None:
            return self.models[self.names[0]]
        if name in self.cascades:  # a cascade is described by its full model
            return self.models[self.cascades[name]["large"]]
        if name not in self.models:
            served = choices(self.names + list(self.cascades))
            raise ModelNotFoundError(f"unknown model {name!r}; this server has {served}")
        return self.models[name]

    def info(self, name: str | None) -> dict:
        return self.model(name).info()

    @staticmethod
    async def _drain(batcher: Batcher, seconds: float = 30.0) -> None:
        """Let queued and running inputs finish (up to `seconds`), then stop the batcher."""
        deadline = time.monotonic() + seconds
        while batcher.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await batcher.stop()

    # -- tasks ------------------------------------------------------------------------------------------------------
    async def embed(self, name, texts, *, pooling=None, normalize=True, truncate=False) -> np.ndarray:
        rows = await self._submit(name, "embed", texts, pooling=pooling, normalize=normalize, truncate=truncate)
        model = self.model(name)
        return np.stack(rows) if rows else np.zeros((0, model.dimension), dtype=np.float32)

    async def embed_all(self, name, texts, *, truncate=False) -> list[np.ndarray]:
        return await self._submit(name, "embed_all", texts, truncate=truncate)

    async def classify(self, name, texts, *, top_k=None, raw_scores=False, truncate=False) -> list[list[dict]]:
        cascade = self.cascades.get(name) if name is not None else None
        if cascade is not None and not raw_scores:
            return await self._cascade(name, cascade, texts, top_k=top_k, truncate=truncate)
        if cascade is not None:  # raw scores have no confidence to route on: the full model answers
            name = cascade["large"]
        return await self._submit(name, "classify", texts, top_k=top_k, raw_scores=raw_scores, truncate=truncate)

    async def _cascade(self, name: str, cascade: dict, texts: list, *, top_k, truncate) -> list[list[dict]]:
        """The small model answers; inputs it is unsure of (top score < threshold) go to the large one."""
        rows = await self._submit(cascade["small"], "classify", texts, top_k=None, raw_scores=False,
                                  truncate=truncate)
        escalated = unsure(rows, cascade["threshold"])
        large_rows = await self._submit(cascade["large"], "classify", [texts[i] for i in escalated], top_k=None,
                                        raw_scores=False, truncate=truncate) if escalated else []
        if self.metrics is not None:
            self.metrics.cascade_inputs.labels(cascade=name).inc(len(texts))
            self.metrics.cascade_escalations.labels(cascade=name).inc(len(escalated))
        return merge_escalated(rows, escalated, large_rows, top_k)

    async def ner(self, name, texts, *, aggregation="simple", truncate=False) -> list[list[dict]]:
        return await self._submit(name, "ner", texts, aggregation=aggregation, truncate=truncate)

    async def fill_mask(self, name, texts, *, top_k=5, truncate=False) -> list:
        return await self._submit(name, "fill_mask", texts, top_k=top_k, truncate=truncate)

    async def rerank(self, name, query: str, texts: list[str], *, raw_scores=False, return_text=False,
                     truncate=False, top_n=None) -> list[dict]:
        if not texts:
            return []
        if is_cross_encoder(self.model(name).runner):
            rows = await self.classify(name, [(query, t) for t in texts], top_k=None, raw_scores=True,
                                       truncate=truncate)
            scores = cross_encoder_scores(np.array([row[0]["score"] for row in rows]), raw_scores)
        else:
            vectors = await self.embed(name, [query, *texts], normalize=True, truncate=truncate)
            scores = vectors[1:] @ vectors[0]
        return ranked(scores, texts, return_text=return_text, top_n=top_n)

    async def similarity(self, name, source: str, sentences: list[str], *, truncate=False) -> list[float]:
        vectors = await self.embed(name, [source, *sentences], normalize=True, truncate=truncate)
        return [float(s) for s in vectors[1:] @ vectors[0]]

    def add_cascade(self, name: str, small: str, large: str, threshold: float = 0.9) -> None:
        """Serve `name` as a cascade: `small` answers, inputs under `threshold` confidence escalate to `large`."""
        if name in self.models or name in self.cascades:
            raise ConflictError(f"the cascade name {name!r} is already a served model or cascade")
        check_compatible(self.model(small).config.id2label, self.model(large).config.id2label, threshold)
        self.cascades[name] = {"small": small, "large": large, "threshold": threshold}

    # -- rollouts ---------------------------------------------------------------------------------------------------
    def start_rollout(self, spec: RolloutSpec) -> Rollout:
        rollout = self.rollouts.add(spec, self.names)
        if self.metrics is not None:
            self.metrics.rollout_active.labels(model=spec.model, candidate=spec.candidate, mode=spec.mode).set(1)
        log.info("rollout started: %s of %s -> %s", spec.mode, spec.model, spec.candidate)
        return rollout

    def stop_rollout(self, model: str) -> Rollout:
        rollout = self.rollouts.remove(model)
        if self.metrics is not None:
            s = rollout.spec
            self.metrics.rollout_active.labels(model=s.model, candidate=s.candidate, mode=s.mode).set(0)
        return rollout

    async def promote(self, model: str) -> Rollout:
        """The candidate now answers for `model` (same batcher under both names); the old primary is unloaded."""
        rollout = self.rollouts.get(model)
        if not rollout.active:
            raise ConflictError(f"the rollout of {rollout.spec.candidate!r} was rolled back: {rollout.reason}")
        self.stop_rollout(model)
        candidate = rollout.spec.candidate
        old_model, old_batcher = self.models[model], self.batchers[model]
        self.models[model], self.batchers[model] = self.models[candidate], self.batchers[candidate]
        await self._drain(old_batcher)
        if self.metrics is not None:
            self.metrics.remove_model_info(model, old_model.name, old_model.weights_sha256 or "")
            self.metrics.set_model_info(model, self.models[model].name, self.models[model].weights_sha256 or "")
        log.info("promoted %s: %s now answers for %s", candidate, self.models[model].name, model)
        return rollout

    async def _rolled_out(self, name: str, task: str, texts: list, params: dict, rollout: Rollout) -> list[Any]:
        """A request for a model under a rollout: canary routing or shadow mirroring, outcomes recorded."""
        spec, info = rollout.spec, REQUEST.get()
        if spec.mode == "shadow":
            result = await self._timed(rollout, "primary", name, task, texts, params)
            shadow = asyncio.get_running_loop().create_task(self._shadow(rollout, task, texts, params, result))
            self._shadows.add(shadow)  # a reference, so the task is not garbage-collected mid-flight
            shadow.add_done_callback(self._shadows.discard)
            return result
        if not rollout.picks_candidate(info.key if info else None, info.headers if info else None):
            return await self._timed(rollout, "primary", name, task, texts, params)
        try:
            result = await self._timed(rollout, "candidate", spec.candidate, task, texts, params)
        except (*CLIENT_ERRORS, DeadlineExceededError):
            raise  # the client's own error, or no time left to retry
        except Exception as exc:  # noqa: BLE001 - the candidate failed: recorded, and the primary answers
            log.warning("canary %s failed (%s: %s); answering with %s", spec.candidate, type(exc).__name__, exc, name)
            return await self._timed(rollout, "primary", name, task, texts, params)
        if info is not None:
            info.served_by = spec.candidate
        return result

    async def _timed(self, rollout: Rollout, role: str, target: str, task: str, texts: list, params: dict) -> Any:
        started, ok = time.perf_counter(), False
        try:
            result = await self._queue(target, task, texts, params)
            ok = True
            return result
        except CLIENT_ERRORS:
            ok = True  # not the model's fault
            raise
        except OverloadedError:
            ok = None  # type: ignore[assignment]  # load, not health: not counted either way
            raise
        finally:
            if ok is not None:
                self._observe_rollout(rollout, role, target, ok, time.perf_counter() - started)

    async def _shadow(self, rollout: Rollout, task: str, texts: list, params: dict, primary: list[Any]) -> None:
        REQUEST.set(None)  # this task's own context: the shadow must not add to the request's timings
        spec = rollout.spec
        started = time.perf_counter()
        try:
            answer = await self._queue(spec.candidate, task, texts, params)
        except OverloadedError:
            return  # the candidate is busy: skip this comparison
        except Exception as exc:  # noqa: BLE001 - recorded, never seen by the client
            log.warning("shadow %s failed: %s: %s", spec.candidate, type(exc).__name__, exc)
            self._observe_rollout(rollout, "candidate", spec.candidate, False, time.perf_counter() - started)
            return
        self._observe_rollout(rollout, "candidate", spec.candidate, True, time.perf_counter() - started)
        agree, cosines = agreement(task, primary, answer)
        rollout.record_shadow(agree, cosines)
        if self.metrics is not None:
            labels = {"model": spec.model, "candidate": spec.candidate}
            self.metrics.shadow_agreement.labels(**labels).set(rollout.agreed / max(rollout.compared, 1))
            for c in cosines:
                self.metrics.shadow_cosine.labels(**labels).observe(c)

    def _observe_rollout(self, rollout: Rollout, role: str, target: str, ok: bool, seconds: float) -> None:
        reason = rollout.observe(role, ok, seconds)
        if self.metrics is not None and target in self.models:
            self.metrics.observe_rollout(rollout.spec.model, self.models[target].name, role, ok, seconds)
        if reason is not None:
            spec = rollout.spec
            log.warning("rolled back %s of %s -> %s: %s", spec.mode, spec.model, spec.candidate, reason)
            if self.metrics is not None:
                self.metrics.rollbacks.labels(model=spec.model, candidate=spec.candidate).inc()
                self.metrics.rollout_active.labels(model=spec.model, candidate=spec.candidate, mode=spec.mode).set(0)

    # -- plumbing ---------------------------------------------------------------------------------------------------
    async def _submit(self, name: str | None, task: str, texts: list, **params: Any) -> list[Any]:
        self.model(name)
        name = name or self.names[0]
        if name in self.cascades:  # other tasks than classify: the full model
            name = self.cascades[name]["large"]
        rollout = self.rollouts.active(name)
        if rollout is not None:
            return await self._rolled_out(name, task, texts, params, rollout)
        return await self._queue(name, task, texts, params)

    async def _queue(self, name: str, task: str, texts: list, params: dict) -> list[Any]:
        """Tokenize (for the token budget), queue one entry per input on `name`'s batcher, await the results."""
        model = self.model(name)
        batcher = self.batchers[name]
        with self.tracer.span(f"robertaops.{task}", model=name, inputs=len(texts)) as trace_context:
            started = time.perf_counter()
            with self.tracer.span("tokenize"):
                encodings = await asyncio.to_thread(model.tokenizer.encode, list(texts))
            tokenized = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.tokenize_duration.labels(model=name).observe(tokenized)
            key = (name, task, tuple(sorted(params.items())))
            tokens = [len(e.ids) for e in encodings]
            info = REQUEST.get()
            timings = info.timings if info is not None else None
            if timings is not None:
                timings["tokenization"] = timings.get("tokenization", 0.0) + tokenized
                timings["tokens"] = timings.get("tokens", 0) + sum(tokens)
            return await batcher.submit(key, list(texts), tokens, timeout=self.settings.request_timeout,
                                        meta=trace_context, timings=timings)

    def _observe(self, name: str, stats: BatchStats) -> None:
        if self.tracer.enabled:  # one queue and one inference span per request in this batch
            first_seen: dict[int, tuple[Any, float]] = {}
            for e in stats.entries:
                if e.meta is not None and (id(e.meta) not in first_seen or e.enqueued < first_seen[id(e.meta)][1]):
                    first_seen[id(e.meta)] = (e.meta, e.enqueued)
            for context, enqueued in first_seen.values():
                self.tracer.record("queue", context, enqueued, stats.started)
                self.tracer.record("inference", context, stats.started, stats.finished, batch_size=stats.size,
                                   batch_tokens=stats.padded_tokens)
        if self.metrics is None:
            return
        self.metrics.observe_batch(name, stats.size, stats.padded_tokens, stats.queue_seconds, None,
                                   stats.run_seconds)
        self.metrics.queue_size.labels(model=name).set(self.batchers[name].queued)
