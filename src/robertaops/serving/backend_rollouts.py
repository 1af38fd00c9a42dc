"""Canary and shadow rollouts as the backend runs them: routing, mirroring, outcome recording, rollback, promotion.

A mixin of `Backend` (backend.py), split out to keep each file to one concern; the rollout state itself (windows,
stickiness, rollback rule) is in rollouts.py. Requests reach `_rolled_out` from `Backend._submit` when the model
they ask for has an active rollout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..errors import ConflictError, DeadlineExceededError, InvalidInputError, OverloadedError, UnsupportedTaskError
from .context import REQUEST
from .rollouts import Rollout, RolloutSpec, agreement

log = logging.getLogger("robertaops.serving")
# Errors that are the client's doing: they say nothing about a candidate's health.
CLIENT_ERRORS = (InvalidInputError, UnsupportedTaskError)


class RolloutMixin:
    """Needs from the class it is mixed into: models, batchers, metrics, rollouts, _shadows, _queue, _drain, names."""

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
