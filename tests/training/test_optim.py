"""The shared optimiser recipe: which parameters decay, and the exact learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from robertaops.model.config import EncoderConfig
from robertaops.model.heads import TransformerModel
from robertaops.training.optim import linear_schedule, make_optimizer, param_groups

TINY = EncoderConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=40, task="mlm")


def names_of(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def test_groups_split_decay_from_biases_norms_embeddings():
    model = TransformerModel(TINY)
    decay, rest = param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and rest["weight_decay"] == 0.0
    decayed = names_of(model, decay["params"])
    kept = names_of(model, rest["params"])
    # Exactly the Linear weights decay: 4 attention + 2 FFN per layer, plus the MLM head's dense.
    linears = (".attn.query.", ".attn.key.", ".attn.value.", ".attn.out.", ".ffn_in.", ".ffn_out.", "mlm.dense.")
    assert decayed == {n for n, _ in model.named_parameters() if n.endswith("weight") and any(k in n for k in linears)}
    assert len(decayed) == 2 * 6 + 1
    for name in ("encoder.embeddings.word.weight", "encoder.embeddings.position.weight",
                 "encoder.embeddings.norm.weight", "encoder.layers.0.attn_norm.weight", "encoder.layers.1.ffn_in.bias",
                 "mlm.bias", "mlm.norm.weight"):
        assert name in kept
    # Every trainable tensor is in exactly one group, the tied decoder counted once.
    all_params = decay["params"] + rest["params"]
    assert len({id(p) for p in all_params}) == len(all_params) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out():
    model = TransformerModel(TINY)
    model.encoder.embeddings.position.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    assert "encoder.embeddings.position.weight" not in names_of(model, groups[0]["params"] + groups[1]["params"])


def test_make_optimizer_uses_roberta_hyperparameters():
    opt = make_optimizer(TransformerModel(TINY), lr=3e-4)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["eps"] == 1e-6
    assert opt.param_groups[1]["lr"] == 3e-4
    with pytest.raises(ValueError, match="learning rate"):
        make_optimizer(TransformerModel(TINY), lr=0)


def test_decay_only_shrinks_decayed_weights():
    """With a zero gradient, AdamW changes only decayed weights, by exactly lr * wd * w."""
    model = TransformerModel(TINY)
    opt = make_optimizer(model, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    torch.testing.assert_close(after["encoder.layers.0.ffn_in.weight"], before["encoder.layers.0.ffn_in.weight"] * 0.95)
    torch.testing.assert_close(after["encoder.embeddings.word.weight"], before["encoder.embeddings.word.weight"])
    torch.testing.assert_close(after["encoder.layers.0.attn_norm.weight"], before["encoder.layers.0.attn_norm.weight"])


def test_linear_schedule_values():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=2.0)
    sched = linear_schedule(opt, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # Warm-up 0, .5, 1, 1.5 then peak 2 at step 4, down by 2/8 a step to 0 at step 12, and floored at 0 after.
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0])


def test_schedule_without_warmup_and_bad_arguments():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, warmup_steps=0, total_steps=4)
    assert opt.param_groups[0]["lr"] == 1.0
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="warmup_steps"):
        linear_schedule(opt, warmup_steps=5, total_steps=4)
    with pytest.raises(ValueError, match="total_steps"):
        linear_schedule(opt, warmup_steps=0, total_steps=0)
