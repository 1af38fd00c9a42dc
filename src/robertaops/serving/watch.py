"""Registry-backed models in the server: `--model NAME=models:/REG@production`, and `--watch` to follow the alias.

`resolve_settings` turns registry URIs into local checkpoint directories before the backend loads them (resolve.py
sits below the registry and cannot do it). With `--watch`, an `AliasWatcher` task polls each alias every
`--watch-interval` seconds and, when it points at another version, calls `backend.replace_model`, which loads and
warms the new weights beside the old ones and switches without dropping a request. A version that fails to load
(a bad manifest, say) is logged and skipped until the alias moves again; the old version keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ..registry import Registry, is_registry_uri
from ..settings import Settings

log = logging.getLogger("robertaops.serving")


def registry_targets(settings: Settings) -> dict[str, str]:
    """{served name: models:/ URI} for the models given as registry URIs."""
    return {name: target for name, target in settings.model_specs() if is_registry_uri(target)}


def resolve_settings(settings: Settings, registry: Registry | None = None) -> Settings:
    """The same settings with every models:/ target replaced by its local directory (no registry opened if none)."""
    targets = registry_targets(settings)
    if not targets:
        return settings
    registry = registry or Registry()
    specs = []
    for name, target in settings.model_specs():
        if name in targets:
            path, info = registry.resolve(target)
            log.info("model %s: %s is version %s at %s", name, target, info["version"], path)
            target = str(path)
        specs.append(f"{name}={target}")
    return settings.model_copy(update={"models": specs})


class AliasWatcher:
    """Polls registry aliases and swaps the served model when one moves."""

    def __init__(self, backend: Any, targets: dict[str, str], interval: float, registry: Registry | None = None):
        self.backend = backend
        self.targets = targets
        self.interval = interval
        self.registry = registry
        self.failed: dict[str, str] = {}  # name -> path that failed to load (skipped until the alias moves again)
        self.reloads = 0
        self._task: asyncio.Task | None = None

    async def check(self) -> list[str]:
        """One poll: the names whose model was replaced."""
        if self.registry is None:  # opening MLflow takes seconds: off the event loop, and only once
            self.registry = await asyncio.to_thread(Registry)
        replaced = []
        for name, uri in self.targets.items():
            try:
                path, info = await asyncio.to_thread(self.registry.resolve, uri)
            except Exception as exc:  # noqa: BLE001 - a registry hiccup must not stop serving or the watch
                log.warning("watch: cannot resolve %s for %s: %s", uri, name, exc)
                continue
            current = Path(self.backend.model(name).path).resolve()
            if Path(path).resolve() == current or self.failed.get(name) == str(path):
                continue
            log.info("watch: %s moved to version %s; reloading %s", uri, info["version"], name)
            try:
                await self.backend.replace_model(name, str(path))
            except Exception as exc:  # noqa: BLE001 - keep the old version serving
                self.failed[name] = str(path)
                log.error("watch: version %s of %s did not load, still serving the previous one: %s",
                          info["version"], uri, exc)
                continue
            self.failed.pop(name, None)
            self.reloads += 1
            replaced.append(name)
        return replaced

    async def _loop(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval)

    def start(self) -> AliasWatcher:
        self._task = asyncio.create_task(self._loop(), name="registry-watch")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


def start_watch(backend: Any, settings: Settings, registry: Registry | None = None) -> AliasWatcher | None:
    """A running watcher when --watch is set and some model is a registry URI; else None."""
    if not settings.watch:
        return None
    targets = registry_targets(settings)
    if not targets:
        log.warning("--watch is set but no --model is a models:/NAME@ALIAS URI: nothing to watch")
        return None
    return AliasWatcher(backend, targets, settings.watch_interval, registry).start()
