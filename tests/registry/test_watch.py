"""`serve --model NAME=models:/REG@production --watch`: the server resolves the alias at start, and when the alias
moves it serves the new version without failing a request; a version that does not load leaves the old one serving."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest


def _score(directory) -> float:
    import robertaops as ro

    return ro.load(directory).classify("text", top_k=1)[0]["score"]


def test_alias_move_reloads_served_model(registry, finetuned, monkeypatch):
    from robertaops.serving.app import create_app
    from robertaops.settings import Settings

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)  # what the server's Registry() opens
    for seed in (20, 21, 22):
        registry.register(finetuned(seed=seed), "watched", copy=seed != 22)
    registry.promote("watched", 1, "production")
    v1, v2 = (_score(registry.resolve(f"models:/watched/{v}")[0]) for v in (1, 2))
    assert abs(v1 - v2) > 1e-4  # the two versions are told apart by their answers
    broken = registry.resolve("models:/watched/3")[0]  # registered by path: break it after registration
    (broken / "config.json").write_text((broken / "config.json").read_text() + " ")

    settings = Settings(models=["clf=models:/watched@production"], watch=True, watch_interval=0.2)
    app = create_app(settings)

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                async def ask() -> float:
                    r = await client.post("/predict", json={"inputs": "text", "top_k": 1})
                    assert r.status_code == 200, r.text
                    return r.json()[0]["score"]

                async def until(value: float, limit: float = 180.0) -> list[float]:
                    seen, start = [], time.monotonic()
                    while time.monotonic() - start < limit:
                        seen += await asyncio.gather(*(ask() for _ in range(4)))  # traffic during the swap
                        if abs(seen[-1] - value) < 1e-5:
                            return seen
                        await asyncio.sleep(0.05)
                    raise AssertionError(f"still serving {seen[-1]} after {limit}s, expected {value}")

                before = await ask()
                await asyncio.to_thread(registry.promote, "watched", 2, "production")
                during = await until(v2)
                watcher = app.state.watcher
                reloads = watcher.reloads
                await asyncio.to_thread(registry.promote, "watched", 3, "production")
                deadline = time.monotonic() + 180  # generous: CI boxes are shared
                while "clf" not in watcher.failed and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                return before, during, reloads, watcher.failed, await ask(), watcher.reloads

    before, during, reloads, failed, after_broken, reloads_after = asyncio.run(scenario())
    assert before == pytest.approx(v1, abs=1e-5)
    assert all(abs(s - v1) < 1e-5 or abs(s - v2) < 1e-5 for s in during)  # every request answered, by v1 or v2
    assert reloads == 1
    assert failed == {"clf": str(broken)}  # version 3 failed its manifest check ...
    assert after_broken == pytest.approx(v2, abs=1e-5) and reloads_after == 1  # ... and v2 kept serving


def test_watch_without_registry_models_does_nothing(caplog):
    from robertaops.serving.watch import registry_targets, resolve_settings, start_watch
    from robertaops.settings import Settings

    settings = Settings(models=["a=/some/dir"], watch=True)
    assert registry_targets(settings) == {} and resolve_settings(settings) is settings
    assert start_watch(object(), settings) is None
    assert "nothing to watch" in caplog.text
