"""PackedLinear: oneDNN with packed weights for CPU inference — the same numbers as nn.Linear, a packed copy that
follows the weight, training untouched, and ro.load's CPU models built from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import robertaops as ro
from robertaops.model import packed as packed_module
from robertaops.model.encoder import ACT_FNS
from robertaops.model.packed import FUSED_ACTIVATIONS, PackedLinear, pack_linears, packing_supported, unpack_linears

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


def test_activation_fused_into_the_bf16_matmul():
    """act(linear(x)) in one oneDNN call, for each activation it covers; None off that path (the caller then runs
    the two steps): fp32, autograd on, an activation oneDNN is not given."""
    if not packing_supported(torch.bfloat16):
        pytest.skip("no packed bf16 kernel here")
    torch.manual_seed(3)
    linear = nn.Linear(48, 96).bfloat16()
    packed = PackedLinear.from_linear(linear)
    x = torch.randn(2, 9, 48, dtype=torch.bfloat16)
    exact = nn.functional.linear(x.double(), linear.weight.double(), linear.bias.double())
    for name in FUSED_ACTIVATIONS:
        with torch.inference_mode():
            got, two_steps = packed.with_activation(x, name), ACT_FNS[name](linear(x))
        want = ACT_FNS[name](exact)
        assert got.dtype == torch.bfloat16 and got.shape == (2, 9, 96)
        # one rounding to bf16 (after the activation) instead of two: at least as close to the exact values
        assert (got.double() - want).abs().max() <= (two_steps.double() - want).abs().max() + 1e-6, name
    fp32 = PackedLinear.from_linear(nn.Linear(48, 96))
    with torch.inference_mode():
        relu, gelu = packed.with_activation(x, "relu"), packed.with_activation(x, "gelu")
        assert (relu >= 0).all() and (relu == 0).any() and (gelu < 0).any()  # each name picks its own function
        assert packed.with_activation(x, "tanh") is None  # not a oneDNN post-op here
        assert fp32.with_activation(x.float(), "gelu") is None
    assert packed.with_activation(x, "gelu") is None  # autograd on


def test_bf16_layers_use_the_fused_activation(default_model_dir, monkeypatch):
    if not packing_supported(torch.bfloat16):
        pytest.skip("no packed bf16 kernel here")
    m = ro.load(default_model_dir, dtype="bfloat16")
    texts = ["a short one", "and a somewhat longer sentence, to have padding in the batch"]
    fused = m.embed(texts)
    monkeypatch.setattr(packed_module, "FUSED_ACTIVATION_DTYPES", ())
    two_steps = m.embed(texts)
    assert not (fused == two_steps).all()  # the fused path ran (it rounds once less)
    cosine = (fused * two_steps).sum(1) / (np.linalg.norm(fused, axis=1) * np.linalg.norm(two_steps, axis=1))
    assert cosine.min() > 0.999, cosine


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


def _dropped(seed: int) -> tuple[nn.Linear, PackedLinear, torch.Tensor]:
    """A plain Linear, a PackedLinear with the same weights whose plain weight is dropped, and that weight."""
    torch.manual_seed(seed)
    plain = nn.Linear(24, 12)
    packed = PackedLinear.from_linear(nn.Linear(24, 12))
    packed.load_state_dict(plain.state_dict())
    want = plain.weight.detach().clone()
    assert packed.drop_plain() == 24 * 12 * 4 and packed.drop_plain() == 0  # once
    assert packed._parameters["weight"].isnan().all()  # nothing left of the values
    return plain, packed, want


def test_dropped_plain_weight_leaves_outputs_and_comes_back_exactly():
    plain, packed, want = _dropped(3)
    param = packed._parameters["weight"]
    x = torch.randn(5, 24)
    with torch.inference_mode():
        assert torch.allclose(packed(x), plain(x), atol=1e-6)  # inference runs on the packed copy alone
    assert packed._plain_dropped
    assert torch.equal(packed.state_dict()["weight"], want)  # rebuilt bit for bit from the packed copy
    assert not packed._plain_dropped and packed._parameters["weight"] is param  # the same Parameter object
    packed.drop_plain()
    assert torch.equal(packed.weight, want)  # reading .weight brings it back too


def test_training_a_module_whose_plain_weight_was_dropped():
    """An optimiser built before the drop keeps working: the Parameter object never changes, only its storage."""
    plain, packed, _ = _dropped(4)
    packed.drop_plain()
    packed.restore_plain()
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.1)
    opt_packed = torch.optim.SGD(packed.parameters(), lr=0.1)
    packed.drop_plain()
    x = torch.randn(6, 24)
    for module, opt in ((plain, opt_plain), (packed, opt_packed)):
        module(x).square().sum().backward()  # autograd on: the plain weight comes back for F.linear
        opt.step()
    assert torch.allclose(packed.weight, plain.weight, atol=1e-6)
    with torch.inference_mode():
        assert torch.allclose(packed(x), plain(x), atol=1e-5)  # repacked after the update


def test_load_state_dict_and_to_after_a_drop():
    plain, packed, want = _dropped(5)
    packed.to(torch.bfloat16)
    assert torch.equal(packed.weight, want.to(torch.bfloat16))  # converted from the real values, not NaN
    plain2, packed2, _ = _dropped(6)
    packed2.load_state_dict(plain.state_dict())
    x = torch.randn(3, 24)
    with torch.inference_mode():
        assert torch.allclose(packed2(x), plain(x), atol=1e-6)


def test_a_model_runs_without_its_plain_weights(default_model_dir):
    m = ro.load(default_model_dir)
    texts = ["a short one", "and a somewhat longer sentence, to have padding in the batch"]
    before, state, count = m.embed(texts), m.runner.model.state_dict(), m.info()["parameters"]
    state = {k: v.clone() for k, v in state.items()}
    freed = m.drop_plain_weights()
    linears = sum(mod._parameters["weight"].numel() for mod in m.runner.model.modules()
                  if isinstance(mod, PackedLinear))  # not .weight: reading it would bring it back
    assert freed == 4 * linears > 0
    assert all(mod._plain_dropped for mod in m.runner.model.modules() if isinstance(mod, PackedLinear))
    assert (m.embed(texts) == before).all() and m.info()["parameters"] == count
    after = m.runner.model.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[k], state[k]) for k in state)


def test_unpack_linears_gives_plain_linears_with_the_exact_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pack_linears(net)
    net[0].drop_plain()  # one of them with its plain weight dropped: restored exactly
    unpack_linears(net)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert not any(hasattr(m, "_packed") or "_plain_dropped" in m.__dict__ for m in net)
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
