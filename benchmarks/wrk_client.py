"""A closed-loop load client in C: wrk (`apt-get install wrk`), for benchmarks/load.py --client wrk.

Why: on a 2-core machine the load generator shares the cores with the server it measures. load.py's own asyncio
client costs ~90-120 us of CPU per request, ~4-5% of what a short request costs the server itself, so served
throughput reads low by about that much. wrk, an epoll loop in C sending prebuilt requests, costs a fraction of it
(its CPU per request is printed, from the kernel's accounting of the child process). Same inputs, same keep-alive
connections, same closed loop: each of --concurrency connections sends its next request when the last one is
answered. wrk cannot do Poisson arrivals, so load.py's half-load open-loop run keeps the Python client.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def available() -> bool:
    return shutil.which("wrk") is not None


def script(texts: list[str]) -> str:
    """A wrk Lua script that cycles through one prebuilt POST /embed per text (one thread: one counter)."""
    bodies = ",\n".join(_lua_string(json.dumps({"inputs": [t]})) for t in texts)
    return (
        "local bodies = {\n" + bodies + "\n}\n"
        "local requests, i = {}, 0\n"
        "function init(args)\n"
        "  for k, body in ipairs(bodies) do\n"
        '    requests[k] = wrk.format("POST", "/embed", {["Content-Type"] = "application/json"}, body)\n'
        "  end\n"
        "end\n"
        "function request()\n"
        "  i = i % #requests + 1\n"
        "  return requests[i]\n"
        "end\n"
    )


def _lua_string(text: str) -> str:
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


class WrkStats:
    """What one wrk run reported, with the interface of load.py's Stats (rps, tps, status, line)."""

    def __init__(self, output: str, mean_tokens: float, client_seconds: float):
        self.requests = int(re.search(r"(\d+) requests in", output).group(1))
        self.elapsed = _duration_ms(re.search(r"requests in ([\d.]+\w+),", output).group(1)) / 1e3
        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        errors = re.search(r"Socket errors: (.*)", output)
        self.ok = self.requests - (int(bad.group(1)) if bad else 0)
        self.status = {200: self.ok, **({"non-2xx": self.requests - self.ok} if bad else {}),
                       **({"socket errors": errors.group(1).strip()} if errors else {})}
        self.percentiles = {int(p): _duration_ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", output, re.M)}
        self.mean_tokens = mean_tokens
        self.client_us = client_seconds / max(self.requests, 1) * 1e6

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed

    @property
    def tps(self) -> float:
        return self.rps * self.mean_tokens

    def line(self, label: str) -> str:
        p = self.percentiles
        return (f"{label}: {self.rps:8.1f} req/s  {self.tps:8.1f} tok/s  p50 {p.get(50, 0):6.1f} ms  "
                f"p90 {p.get(90, 0):6.1f} ms  p99 {p.get(99, 0):6.1f} ms  status {self.status}  "
                f"(wrk: {self.client_us:.0f} us CPU per request)")


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * UNITS[unit]


def closed_loop(port: int, texts: list[str], counts: list[int], concurrency: int, duration: float) -> WrkStats:
    """`concurrency` keep-alive connections on one wrk thread, for `duration` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "embed.lua"
        lua.write_text(script(texts))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{duration:g}s", "--latency", "--timeout", "60s",
                              "-s", str(lua),
                              f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return WrkStats(out, sum(counts) / len(counts), used)
