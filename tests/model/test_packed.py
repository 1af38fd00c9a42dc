"""PackedLinear: oneDNN with packed weights for CPU inference — the same numbers as nn.Linear, a packed copy that
follows the weight, training untouched, and ro.load's CPU models built from it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robertaops as ro
from robertaops.model.packed import PackedLinear, pack_linears, packing_supported

pytestmark = pytest.mark.skipif(not packing_supported(), reason="this torch build has no oneDNN packed linear")


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_packed_linear_equals_linear(dtype, tol):
    if not packing_supported(dtype):
        pytest.skip(f"no packed {dtype} kernel here")
    torch.manual_seed(0)
    linear = nn.Linear(48, 40).to(dtype)
    packed = PackedLinear.from_linear(linear)
    assert packed.weight is linear.weight and isinstance(packed, nn.Linear)
    x3 = torch.randn(3, 7, 48, dtype=dtype)
    for x in (torch.randn(5, 48, dtype=dtype), x3, torch.randn(1, 48, dtype=dtype), x3[:, 0]):  # x3[:, 0]: a head's
        with torch.inference_mode():
            got, want = packed(x), linear(x)
        assert got.shape == want.shape and got.dtype == dtype
        assert (got.float() - want.float()).abs().max() < tol * want.float().abs().max()


def test_packed_copy_follows_the_weight():
    """An in-place update (load_state_dict, an optimiser step) or a swapped-in tensor must not leave the packed copy
    stale."""
    torch.manual_seed(1)
    packed = PackedLinear.from_linear(nn.Linear(16, 8))
    x = torch.randn(4, 16)
    with torch.inference_mode():
        packed(x)  # packed and used once
    new = nn.Linear(16, 8)
    packed.load_state_dict(new.state_dict())
    with torch.inference_mode():
        assert torch.allclose(packed(x), new(x), atol=1e-6)
    with torch.no_grad():
        packed.weight.mul_(2)
    with torch.inference_mode():
        assert torch.allclose(packed(x), 2 * (new(x) - new.bias) + new.bias, atol=1e-5)
    packed.weight.data = new.weight.detach().clone()  # a new tensor swapped in, as module.to() does
    with torch.inference_mode():
        assert torch.allclose(packed(x), new(x), atol=1e-6)


def test_training_still_gets_gradients():
    torch.manual_seed(2)
    linear = nn.Linear(8, 3)
    packed = PackedLinear.from_linear(nn.Linear(8, 3))
    packed.load_state_dict(linear.state_dict())
    x = torch.randn(6, 8)
    packed(x).square().sum().backward()
    linear(x).square().sum().backward()
    assert torch.allclose(packed.weight.grad, linear.weight.grad, atol=1e-6)


def test_pack_linears_keeps_the_state_dict(default_model_dir):
    """ro.load's CPU fp32 model runs on PackedLinear; its state dict is the plain model's, key for key, and packing
    a plain model gives the same forward bit for bit."""
    from robertaops.model.checkpoint import build_model

    net = ro.load(default_model_dir).runner.model
    assert any(isinstance(mod, PackedLinear) for mod in net.modules())
    assert not any(type(mod) is nn.Linear for mod in net.modules())
    plain = build_model(default_model_dir)
    assert list(plain.state_dict()) == list(net.state_dict())
    x = torch.randint(3, 1000, (2, 9))
    with torch.inference_mode():
        unpacked = plain(x, torch.ones_like(x))
        packed = pack_linears(plain)(x, torch.ones_like(x))
        assert torch.equal(packed, net(x, torch.ones_like(x)))
        assert (packed - unpacked).abs().max() < 1e-4  # MKL against oneDNN: the same fp32, summed in another order


def test_pack_can_be_turned_off(default_model_dir, monkeypatch):
    monkeypatch.setenv("ROBERTAOPS_PACK", "0")
    net = ro.load(default_model_dir).runner.model
    assert not any(isinstance(mod, PackedLinear) for mod in net.modules())
