"""benchmarks/wrk_client.py: wrk's report read back right, and the Lua script quoting any text."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import wrk_client  # noqa: E402

REPORT = """Running 6s test @ http://127.0.0.1:18777
  1 threads and 128 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   390.60ms  120.69ms   1.20s    76.43%
    Req/Sec   361.59    152.65     1.76k    70.00%
  Latency Distribution
     50%  393.80ms
     75%  450.10ms
     90%  614.00ms
     99%    1.20s
  2170 requests in 6.03s, 804.38KB read
  Socket errors: connect 0, read 0, write 0, timeout 3
  Non-2xx or 3xx responses: 8
Requests/sec:    359.87
Transfer/sec:    133.39KB
"""


def test_report_is_read_back():
    stats = wrk_client.WrkStats(REPORT, mean_tokens=16.0, client_seconds=0.1085)
    assert stats.requests == 2170 and stats.ok == 2162 and stats.elapsed == pytest.approx(6.03)
    assert stats.rps == pytest.approx(2162 / 6.03) and stats.tps == pytest.approx(16 * 2162 / 6.03)
    assert stats.percentiles == {50: 393.8, 75: 450.1, 90: 614.0, 99: 1200.0}
    assert stats.status == {200: 2162, "non-2xx": 8, "socket errors": "connect 0, read 0, write 0, timeout 3"}
    assert stats.client_us == pytest.approx(50.0)
    assert "p99 1200.0 ms" in stats.line("x")


@pytest.mark.parametrize("text", ['{"inputs": ["plain"]}', "a]]b", "]=] and ]]", "]==]]=]]]"])
def test_lua_long_strings_hold_any_text(text):
    quoted = wrk_client._lua_string(text)
    level = quoted.index("[", 1)  # "[" + "=" * level + "["
    assert quoted == f"[{'=' * (level - 1)}[{text}]{'=' * (level - 1)}]"
    assert f"]{'=' * (level - 1)}]" not in text  # the closing bracket cannot occur inside
