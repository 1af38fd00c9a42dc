"""model/traced.py: TorchScript-traced layers give the eager layers' outputs bit for bit, in every batch layout and
shape; training and autograd still run eagerly; the state dict is untouched; a server with --trace-layers serves
the engine's vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import robertaops as ro
from robertaops.model.encoder import Layer
from robertaops.model.traced import TracedLayer

TEXTS = ["short", "a somewhat longer sentence about nothing much at all", "mid length text here",
         "the quick brown fox jumps over the lazy dog " * 3]


@pytest.fixture
def plain(make_checkpoint, monkeypatch):
    """(checkpoint dir, a model on plain Linears: what a traced model runs, eagerly)."""
    directory = make_checkpoint("roberta")[0]
    monkeypatch.setenv("ROBERTAOPS_PACK", "0")
    return directory, ro.load(directory)


def test_traced_layers_equal_the_eager_layers_in_every_layout(plain):
    directory, eager = plain
    traced = ro.load(directory)  # packed Linears: tracing makes them plain again
    assert traced.trace_layers() == 2 and traced.matmul == "torch"
    layers = [m for m in traced.runner.model.modules() if isinstance(m, Layer)]
    assert all(isinstance(m, TracedLayer) for m in layers)
    batches = {"one text (no padding)": TEXTS[:1], "equal lengths": [TEXTS[2]] * 3,
               "different lengths": TEXTS[1:3], "much padding (unpadded)": TEXTS}
    for name, texts in batches.items():
        assert np.array_equal(traced.embed(texts), eager.embed(texts)), name
        assert all(np.array_equal(a, b) for a, b in zip(traced.embed_all(texts), eager.embed_all(texts),
                                                         strict=True)), name
    seqs = [[0] + [5] * 22 + [2], [0] + [5] * 21 + [2]]  # 1 pad token in 48: runs padded, with the mask
    hidden = [m.runner.forward_ids(seqs, lambda h, mask: h) for m in (traced, eager)]
    assert torch.equal(*hidden)
    traced.warm_up()  # one batch per layout
    keys = {key[0].__name__ for layer in layers for key in layer._traces}
    assert keys == {"_Dense", "_Masked", "_Unpadded"}  # every layout went through a trace, not the eager path
    assert np.array_equal(traced.embed(TEXTS * 3), eager.embed(TEXTS * 3))  # new shapes, the same traces


def test_traced_layers_train_eagerly_and_keep_the_state_dict(plain):
    directory, eager = plain
    traced = ro.load(directory)
    before = set(traced.runner.model.state_dict())
    traced.trace_layers()
    assert set(traced.runner.model.state_dict()) == before
    layer = next(m for m in traced.runner.model.modules() if isinstance(m, TracedLayer))
    x = torch.randn(2, 5, layer.attn.query.in_features)
    y = layer(x, None)  # autograd on: the eager forward, gradients flow
    y.sum().backward()
    assert layer.ffn_in.weight.grad is not None and not layer._traces


def test_a_server_with_traced_layers_serves_the_engine_vectors(plain):
    from fastapi.testclient import TestClient

    from robertaops.serving.app import create_app
    from robertaops.serving.backend import Backend
    from robertaops.settings import Settings

    directory, eager = plain
    settings = Settings(models=[f"tiny={directory}"], trace_layers=True, model_workers=2)
    backend = Backend(settings)  # loads the model itself, as `robertaops serve --trace-layers` does
    assert isinstance(next(m for m in backend.models["tiny"].runner.model.modules() if isinstance(m, Layer)),
                      TracedLayer)
    with TestClient(create_app(settings, backend)) as c:
        served = np.array(c.post("/embed", json={"inputs": TEXTS}).json())
        info = c.get("/info").json()
    assert info["matmul"] == "torch"
    np.testing.assert_allclose(served, eager.embed(TEXTS), atol=1e-6)  # batches may split: float rounding only


@pytest.mark.parametrize(("device", "dtype", "flags", "expected"), [
    ("cpu", "float32", {"GenuineIntel", "avx512f"}, True),
    ("cpu", "float32", {"AuthenticAMD", "avx512f"}, False),  # oneDNN's packed matmul was faster on the Zen 5
    ("cpu", "bfloat16", {"GenuineIntel"}, False),  # a bf16 server gained nothing (0.97x)
    ("cuda", "float32", {"GenuineIntel"}, False),
])
def test_servers_trace_float32_layers_on_intel_cpus_unless_told(monkeypatch, device, dtype, flags, expected):
    from robertaops import api

    monkeypatch.setattr(api, "cpu_flags", lambda: frozenset(flags))
    assert api.traced_by_default(device, dtype) is expected


def test_a_layout_that_cannot_be_traced_runs_eagerly_with_one_warning(plain, monkeypatch):
    directory, eager = plain
    traced = ro.load(directory)
    traced.trace_layers()

    def unavailable(*args, **kwargs):
        raise RuntimeError("no tracing in this torch")

    monkeypatch.setattr(torch.jit, "trace", unavailable)
    with pytest.warns(UserWarning, match="dense batches run eagerly.*no tracing in this torch") as caught:
        assert np.array_equal(traced.embed(TEXTS[:1]), eager.embed(TEXTS[:1]))
        assert np.array_equal(traced.embed(TEXTS[:1]), eager.embed(TEXTS[:1]))  # the second call: no new warning
    assert len([w for w in caught if "run eagerly" in str(w.message)]) == 2  # once per layer (2 layers)
