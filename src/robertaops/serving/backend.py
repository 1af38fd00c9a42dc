"""Backend: the loaded models behind the server, each with its own cross-request batcher. No HTTP in here.

Every coroutine below turns a request into one queue entry per input, keyed by (model, task, parameters) so that
only compatible inputs share a forward pass, and awaits their results. Token counts for the budget come from the
real tokenizer (on the event loop for short requests, in a thread for long ones); the pipelines themselves (the
same ones the Python API and the CLI use) run in each batcher's worker threads.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Hashable
from typing import Any

import numpy as np

from ..api import Model, load, restore_threads, serving_workers, share_threads, traced_by_default
from ..cascade import check_compatible, merge_escalated, unsure
from ..errors import ConflictError, InvalidInputError, ModelNotFoundError, choices
from ..monitoring.drift import Reference
from ..monitoring.online import OnlineDrift
from ..pipelines.rerank import cross_encoder_scores, is_cross_encoder, ranked
from ..pipelines.runner import default_batch_tokens
from ..settings import Settings
from .backend_rollouts import RolloutMixin
from .batcher import Batcher, BatchStats
from .context import REQUEST
from .rollouts import Rollouts, RolloutSpec
from .tracing import Tracer

log = logging.getLogger("robertaops.serving")

# Prometheus statistic label -> OnlineDrift.gauges() key
DRIFT_GAUGES = {"centroid_distance": "centroid_cosine_distance", "length_psi": "psi_lengths", "label_psi": "psi_labels"}
# Requests with at most this many characters are tokenized on the event loop: one short text takes ~35 us there,
# while handing it to a thread costs the loop ~210 us of its own CPU. Longer requests go to a thread, so the loop
# is never held for more than ~0.2 ms.
INLINE_TOKENIZE_CHARS = 512
TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"  # Hugging Face tokenizers' switch for its thread pool


def _characters(texts: list) -> int:
    """Characters in a request's inputs (texts or text pairs), counted until the inline limit is passed."""
    total = 0
    for text in texts:
        total += len(text) if isinstance(text, str) else sum(len(t) for t in text)
        if total > INLINE_TOKENIZE_CHARS:
            break
    return total


def drift_references(settings: Settings, served: list[str]) -> dict[str, Reference]:
    """NAME=PATH specs -> loaded references, each for a served model."""
    out = {}
    for spec in settings.drift_references:
        name, sep, path = spec.partition("=")
        if not sep or name not in served:
            raise InvalidInputError(f"drift reference {spec!r} must be NAME=REF.npz for a served model "
                                    f"({choices(served)})")
        out[name] = Reference.load(path)
    return out


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


def settle_heap() -> None:
    """Collect garbage once, then exempt everything alive (models, torch, the app) from future collections.

    A full collection walked the server's ~200k long-lived objects in ~200 ms, holding the GIL: the event loop and
    the model both stopped, and that pause was the p99 at half load. Frozen objects are never scanned again; what
    requests allocate is collected as usual. Called after models are loaded or dropped (unfrozen first, so a
    dropped model's cycles are freed), which costs one such pause per admin load/unload; `stop()` unfreezes."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Backend(RolloutMixin):
    def __init__(self, settings: Settings, models: dict[str, Model] | None = None, metrics: Any = None):
        self.settings = settings
        self.metrics = metrics
        self.workers = settings.model_workers or serving_workers(settings.device)
        self._threads_before: int | None = None
        self._set_tokenizer_parallelism = False
        if models is None:
            models = {name: self._load(target) for name, target in settings.model_specs()}
        if not models:
            raise ModelNotFoundError("the server needs at least one model")
        self.models = dict(models)
        self.names = list(self.models)
        self.batchers: dict[str, Batcher] = {}
        self.tracer = Tracer(settings.otlp_endpoint)
        self.rollouts = Rollouts()
        self.cascades: dict[str, dict] = {}
        self.drift = {name: OnlineDrift(reference, window=settings.drift_window)
                      for name, reference in drift_references(settings, self.names).items()}
        for spec in settings.cascades:
            self.add_cascade(**spec)
        self._shadows: set[asyncio.Task] = set()
        self.ready = False

    def _load(self, target: str) -> Model:
        """A model this server loads itself. It only ever runs inference: its layers are traced (`--trace-layers`,
        Model.trace_layers: plain Linears, the packed copies go), or else the plain copies of packed weights go
        (roberta-base fp32: ~340 MB). Models handed to the Backend stay as they are: their owner may train them."""
        s = self.settings
        model = load(target, device=s.device, dtype=s.dtype, max_length=s.max_length,
                     max_batch_tokens=s.max_batch_tokens)
        trace = s.trace_layers if s.trace_layers is not None else traced_by_default(s.device, model.dtype)
        if trace and model.trace_layers():
            return model  # its Linears are plain now: nothing packed to drop
        model.drop_plain_weights()
        return model

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        # The workers share the cores instead of each spreading over all; `stop` gives the threads back.
        self._threads_before = share_threads(self.workers)
        if str(self.settings.device).startswith("cpu") and TOKENIZERS_PARALLELISM not in os.environ:
            # The cores belong to the model workers: the tokenizer's own thread pool would compete with them, and
            # for the event loop's one-text requests its hand-off costs more than the work (+3% short req/s).
            os.environ[TOKENIZERS_PARALLELISM] = "false"
            self._set_tokenizer_parallelism = True
        for name, model in self.models.items():
            await self._start_model(name, model)
        for spec in self.settings.rollouts:
            try:
                self.start_rollout(RolloutSpec(**spec))
            except TypeError as exc:  # an unknown field
                raise InvalidInputError(f"rollout {spec}: {exc}") from None
        settle_heap()
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
            workers=self.workers,
        )
        batcher.start()
        await asyncio.to_thread(model.warm_up)  # every batch layout's first forward (compiles int8) before traffic
        await batcher.warm_up(lambda m=model: m.embed(["warm-up"]))  # each worker runs a forward before traffic
        self.batchers[name] = batcher
        if self.metrics is not None:
            self.metrics.set_model_info(name, model.name, model.weights_sha256 or "")

    async def add_model(self, name: str, target: str) -> dict:
        """Load `target` (a path or hub id) in a thread, warm it up, then route requests for `name` to it."""
        if name in self.models:
            raise ConflictError(f"a model named {name!r} is already served; unload it first")
        model = await asyncio.to_thread(self._load, target)
        if name in self.models:  # another request loaded the same name while this one was loading
            raise ConflictError(f"a model named {name!r} is already served; unload it first")
        await self._start_model(name, model)
        self.models[name] = model
        self.names.append(name)
        settle_heap()
        log.info("loaded model %s from %s", name, target)
        return model.info()

    async def replace_model(self, name: str, target: str) -> dict:
        """Serve `target` under an existing `name` without dropping a request: load and warm it up beside the old
        one, switch new requests to it, then let the old one finish what it holds (registry aliases, --watch)."""
        old_model = self.model(name)
        model = await asyncio.to_thread(self._load, target)
        old_batcher = self.batchers[name]
        await self._start_model(name, model)  # warms up, then registers the new batcher under `name`
        self.models[name] = model
        if all(b is not old_batcher for b in self.batchers.values()):
            await self._drain(old_batcher)
        if self.metrics is not None:
            self.metrics.remove_model_info(name, old_model.name, old_model.weights_sha256 or "")
            self.metrics.set_model_info(name, model.name, model.weights_sha256 or "")
        log.info("replaced model %s: %s -> %s", name, old_model.name, model.name)
        del old_model, old_batcher  # nothing here holds the old model any more: let settle_heap free it
        settle_heap()
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
        del model, batcher
        settle_heap()
        log.info("unloaded model %s", name)

    async def stop(self) -> None:
        self.ready = False
        for task in list(self._shadows):
            task.cancel()
        for batcher in {id(b): b for b in self.batchers.values()}.values():
            await batcher.stop()
        self.batchers.clear()
        self.tracer.shutdown()
        gc.unfreeze()
        if self._threads_before is not None:
            restore_threads(self._threads_before)
            self._threads_before = None
        if self._set_tokenizer_parallelism:
            os.environ.pop(TOKENIZERS_PARALLELISM, None)
            self._set_tokenizer_parallelism = False

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
        with self.tracer.span(f"robertaops.{task}", model=name, inputs=len(texts)) as trace_context:
            started = time.perf_counter()
            with self.tracer.span("tokenize"):
                if _characters(texts) <= INLINE_TOKENIZE_CHARS:
                    tokens = model.tokenizer.lengths(list(texts), inline=True)
                else:
                    tokens = await asyncio.to_thread(model.tokenizer.lengths, list(texts))
            tokenized = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.tokenize_duration.labels(model=name).observe(tokenized)
            key = (name, task, tuple(sorted(params.items())))
            info = REQUEST.get()
            timings = info.timings if info is not None else None
            if timings is not None:
                timings["tokenization"] = timings.get("tokenization", 0.0) + tokenized
                timings["tokens"] = timings.get("tokens", 0) + sum(tokens)
            # Looked up only now, after the tokenizer's await: a model replaced meanwhile has drained and stopped its
            # old batcher, and nothing between this line and submit() yields to the event loop.
            batcher = self.batchers.get(name)
            if batcher is None:
                raise ModelNotFoundError(f"model {name!r} was unloaded while this request was being tokenized")
            results = await batcher.submit(key, list(texts), tokens, timeout=self.settings.request_timeout,
                                           meta=trace_context, timings=timings)
        if name in self.drift:
            self._watch_drift(name, task, tokens, results)
        return results

    def _watch_drift(self, name: str, task: str, tokens: list[int], results: list[Any]) -> None:
        """Feed the model's drift window with what this request already computed (microseconds per input)."""
        embeddings = np.stack(results) if task == "embed" and results else None
        labels = [row[0]["label"] for row in results if row] if task == "classify" else None
        self.drift[name].update(embeddings=embeddings, lengths=tokens, labels=labels)

    def export_drift(self) -> None:
        """Drift gauges, computed when Prometheus scrapes (the window's statistics, not per request)."""
        if self.metrics is None:
            return
        for name, drift in self.drift.items():
            g = drift.gauges()
            for statistic, key in DRIFT_GAUGES.items():
                self.metrics.drift_score.labels(model=name, statistic=statistic).set(g[key])
            self.metrics.drift_window.labels(model=name).set(g["window_lengths"])

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
