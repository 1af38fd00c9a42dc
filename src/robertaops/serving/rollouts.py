"""Canary and shadow rollouts of a candidate model beside a served one, with automatic rollback. No HTTP, no torch.

A rollout pairs a served model (the primary, the name clients ask for) with a candidate, another served model:
- canary: a `fraction` of the requests for the primary go to the candidate. Sticky: the choice is a hash of the API
  key's name (or of a request header, `sticky="header:x-user-id"`), so one user sees one version; without either,
  each request draws at random. A request the candidate fails (a server-side error) is answered by the primary.
- shadow: every request runs on the primary, whose answer is returned; the same inputs are then mirrored to the
  candidate in the background and only compared (agreement, embedding cosine, latency), never returned.
Rollback: after each candidate outcome, if the last `window_seconds` hold at least `min_requests` candidate
outcomes and their error rate is over `max_error_rate`, or their p99 latency over `max_p99_ms`, the rollout stops
routing and mirroring at once and records why. Everything is visible in `snapshot()` (the admin API) and metrics.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConflictError, InvalidInputError, ModelNotFoundError, choices

MODES = ("canary", "shadow")


@dataclass(frozen=True)
class RolloutSpec:
    model: str  # the served name clients ask for
    candidate: str  # another served name: the version being tried
    mode: Literal["canary", "shadow"] = "canary"
    fraction: float = 0.1  # canary: share of requests (by sticky bucket) sent to the candidate
    sticky: str = "key"  # "key" (the API key's name) or "header:<name>"
    max_error_rate: float = 0.05
    max_p99_ms: float | None = None
    window_seconds: float = 60.0
    min_requests: int = 20

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInputError(f"rollout mode {self.mode!r}; choose {choices(MODES)}")
        if not 0.0 <= self.fraction <= 1.0:
            raise InvalidInputError(f"rollout fraction must be in [0, 1], got {self.fraction}")
        if self.sticky != "key" and not (self.sticky.startswith("header:") and len(self.sticky) > 7):
            raise InvalidInputError(f"sticky must be 'key' or 'header:<name>', got {self.sticky!r}")
        if self.model == self.candidate:
            raise InvalidInputError("a rollout needs two different served models")
        if not 0.0 <= self.max_error_rate <= 1.0 or self.window_seconds <= 0 or self.min_requests < 1:
            raise InvalidInputError("max_error_rate must be in [0, 1], window_seconds > 0 and min_requests >= 1")


class Window:
    """Outcomes (time, ok, seconds) of the last `seconds`."""

    def __init__(self, seconds: float, clock: Callable[[], float]):
        self.seconds, self.clock = seconds, clock
        self.items: deque[tuple[float, bool, float]] = deque()

    def add(self, ok: bool, seconds: float) -> None:
        self.items.append((self.clock(), ok, seconds))
        self._prune()

    def _prune(self) -> None:
        horizon = self.clock() - self.seconds
        while self.items and self.items[0][0] < horizon:
            self.items.popleft()

    def summary(self) -> dict[str, Any]:
        self._prune()
        n = len(self.items)
        if not n:
            return {"requests": 0, "error_rate": None, "p50_ms": None, "p99_ms": None}
        latencies = np.array([s for _, ok, s in self.items if ok] or [0.0]) * 1000
        errors = sum(1 for _, ok, _ in self.items if not ok)
        return {"requests": n, "error_rate": errors / n, "p50_ms": float(np.percentile(latencies, 50)),
                "p99_ms": float(np.percentile(latencies, 99))}


@dataclass
class Rollout:
    spec: RolloutSpec
    clock: Callable[[], float] = time.monotonic
    state: str = "active"  # active | rolled_back
    reason: str | None = None
    started: float = field(default_factory=time.time)
    compared: int = 0  # shadow: inputs compared
    agreed: float = 0.0  # shadow: sum of per-input agreement (1 = same answer)
    cosines: list[float] = field(default_factory=list)  # shadow: embedding cosines, the last 1,000

    def __post_init__(self) -> None:
        self.windows = {role: Window(self.spec.window_seconds, self.clock) for role in ("primary", "candidate")}

    @property
    def active(self) -> bool:
        return self.state == "active"

    def picks_candidate(self, key: str | None, headers: Mapping[str, str] | None) -> bool:
        """Canary routing: the same sticky value always lands on the same side of `fraction`."""
        if not self.active or self.spec.mode != "canary" or self.spec.fraction <= 0.0:
            return False
        who = key if self.spec.sticky == "key" else (headers or {}).get(self.spec.sticky[7:].lower())
        if who is None:
            return random.random() < self.spec.fraction
        digest = hashlib.sha256(f"{self.spec.model}\0{self.spec.candidate}\0{who}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.spec.fraction

    def observe(self, role: str, ok: bool, seconds: float) -> str | None:
        """Record one outcome; returns the rollback reason if this outcome triggered one."""
        self.windows[role].add(ok, seconds)
        if role != "candidate" or not self.active:
            return None
        s = self.windows["candidate"].summary()
        if s["requests"] < self.spec.min_requests:
            return None
        if s["error_rate"] > self.spec.max_error_rate:
            return self.roll_back(f"candidate error rate {s['error_rate']:.1%} over {s['requests']} requests in "
                                  f"{self.spec.window_seconds:g} s > {self.spec.max_error_rate:.1%}")
        if self.spec.max_p99_ms is not None and s["p99_ms"] > self.spec.max_p99_ms:
            return self.roll_back(f"candidate p99 latency {s['p99_ms']:.0f} ms over {s['requests']} requests in "
                                  f"{self.spec.window_seconds:g} s > {self.spec.max_p99_ms:g} ms")
        return None

    def roll_back(self, reason: str) -> str:
        self.state, self.reason = "rolled_back", reason
        return reason

    def record_shadow(self, agreement: list[float], cosines: list[float]) -> None:
        self.compared += len(agreement)
        self.agreed += float(sum(agreement))
        self.cosines = (self.cosines + cosines)[-1000:]

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {**asdict(self.spec), "state": self.state, "reason": self.reason,
                               "started": self.started, "windows": {r: w.summary() for r, w in self.windows.items()}}
        if self.spec.mode == "shadow":
            out["shadow"] = {"compared": self.compared,
                             "agreement": self.agreed / self.compared if self.compared else None,
                             "cosine_mean": float(np.mean(self.cosines)) if self.cosines else None,
                             "cosine_min": float(np.min(self.cosines)) if self.cosines else None}
        return out


class Rollouts:
    """The server's rollouts, at most one per primary model."""

    def __init__(self) -> None:
        self.by_model: dict[str, Rollout] = {}

    def add(self, spec: RolloutSpec, served: list[str]) -> Rollout:
        for name in (spec.model, spec.candidate):
            if name not in served:
                raise ModelNotFoundError(f"unknown model {name!r}; this server has {choices(served)}")
        current = self.by_model.get(spec.model)
        if current is not None and current.active:
            raise ConflictError(f"{spec.model!r} already has an active {current.spec.mode} of "
                                f"{current.spec.candidate!r}; stop it first")
        if spec.candidate in self.by_model and self.by_model[spec.candidate].active:
            raise ConflictError(f"{spec.candidate!r} is itself the primary of an active rollout")
        rollout = Rollout(spec)
        self.by_model[spec.model] = rollout
        return rollout

    def active(self, model: str) -> Rollout | None:
        rollout = self.by_model.get(model)
        return rollout if rollout is not None and rollout.active else None

    def get(self, model: str) -> Rollout:
        if model not in self.by_model:
            others = f"rollouts exist for {choices(list(self.by_model))}" if self.by_model else "there are none"
            raise ModelNotFoundError(f"no rollout for {model!r}; {others}")
        return self.by_model[model]

    def remove(self, model: str) -> Rollout:
        rollout = self.get(model)
        del self.by_model[model]
        return rollout

    def involving(self, name: str) -> list[Rollout]:
        return [r for r in self.by_model.values() if r.active and name in (r.spec.model, r.spec.candidate)]


def agreement(task: str, primary: list[Any], candidate: list[Any]) -> tuple[list[float], list[float]]:
    """Per input: 1.0 when the candidate gives the same answer (top label, entities, top token), and for embeddings
    the cosine of the two vectors (agreement then means cosine >= 0.99)."""
    agree: list[float] = []
    cosines: list[float] = []
    for a, b in zip(primary, candidate, strict=True):
        if task in ("embed", "embed_all"):
            a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
            if a.shape != b.shape:
                cosines.append(0.0)
            else:
                cosines.append(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)))
            agree.append(float(cosines[-1] >= 0.99))
        elif task == "classify":
            agree.append(float(_top(a) == _top(b)))
        elif task == "ner":
            spans = [[(e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in x] for x in (a, b)]
            agree.append(float(spans[0] == spans[1]))
        else:  # fill_mask: the best token (of each mask)
            agree.append(float(_top(a) == _top(b)))
    return agree, cosines


def _top(result: Any) -> Any:
    """The best label / token of a classify or fill-mask result (a list best first, or a list of such lists)."""
    if isinstance(result, list) and result and isinstance(result[0], list):
        return [_top(r) for r in result]
    if isinstance(result, list) and result:
        first = result[0]
        return first.get("label", first.get("token_str")) if isinstance(first, dict) else first
    return result
