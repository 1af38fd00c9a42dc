"""Writes are atomic: a writer killed with SIGKILL in the middle of a write leaves the previous index readable and
consistent, and the next write cleans up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from robertaops.search import writer
from robertaops.search.index import Index
from robertaops.search.sources import Doc

WRITER = textwrap.dedent("""
    import sys
    import robertaops as ro
    from pathlib import Path
    from robertaops.search import writer
    from robertaops.search.sources import Doc
    m = ro.load(sys.argv[2])
    for round in range(1000):  # writes forever, until killed
        docs = [Doc(f"w{round}-{i}", f"document {i} written in round {round} " * 20) for i in range(200)]
        writer.add(Path(sys.argv[1]), [docs], m, progress=False)
""")


def consistent(path) -> int:
    ix = Index.open(path)
    docs, chunks = ix.store.count()
    assert (docs, chunks) == (ix.manifest["counts"]["documents"], ix.manifest["counts"]["chunks"])
    assert ix.vectors.ntotal == chunks
    assert len(ix.search("document written", mode="lexical", k=5)) > 0
    return docs


def test_sigkill_mid_write_leaves_previous_state(tmp_path, tiny_model):
    path = tmp_path / "ix"
    writer.build(path, [[Doc("seed", "the first document")]], tiny_model, str(tiny_model.path), progress=False)
    killed_mid_write = 0
    for attempt in range(2):
        before = consistent(path)
        leftovers = set(path.glob(".tmp-*"))  # from the writer killed in the previous round
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(tiny_model.path)],
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            deadline = time.monotonic() + 120
            # wait until this writer is inside a write of its own (its temporary generation exists), then kill it
            while not set(path.glob(".tmp-*")) - leftovers and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05 * attempt)
            mid = bool(set(path.glob(".tmp-*")) - leftovers)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        killed_mid_write += mid
        after = consistent(path)  # whatever the moment, the index reads and agrees with itself
        assert after >= before and (after - before) % 200 == 0  # whole writes only, never half of one
    assert killed_mid_write >= 1, "the writer was never caught inside a write"
    writer.add(path, [[Doc("next", "the writer after the crash")]], tiny_model)
    assert not list(path.glob(".tmp-*"))  # the killed writer's leftovers are cleaned up
    assert consistent(path) >= 2
