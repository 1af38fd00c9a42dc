"""Settings: env vars ROBERTAOPS_* fill every field; model specs parse and are checked."""

from __future__ import annotations

import pytest

from robertaops.errors import InvalidInputError
from robertaops.settings import Settings


def test_env_vars_fill_fields(monkeypatch):
    monkeypatch.setenv("ROBERTAOPS_MAX_BATCH_TOKENS", "4096")
    monkeypatch.setenv("ROBERTAOPS_MODELS", "mini=/models/mini,big=/models/big")
    s = Settings()
    assert s.max_batch_tokens == 4096
    assert s.model_specs() == [("mini", "/models/mini"), ("big", "/models/big")]


def test_models_as_a_json_list(monkeypatch):
    monkeypatch.setenv("ROBERTAOPS_MODELS", '["a=/x", "/models/roberta-small/"]')
    assert Settings().model_specs() == [("a", "/x"), ("roberta-small", "/models/roberta-small/")]


@pytest.mark.parametrize(
    "models, needle", [(["a=/x", "a=/y"], "twice"), (["=/x"], "NAME=PATH_OR_ID"), ([], "at least")]
)
def test_bad_model_specs_are_named(models, needle):
    with pytest.raises(InvalidInputError, match=needle):
        Settings(models=models).model_specs()


def test_model_workers_share_the_torch_threads():
    import torch

    from robertaops.api import restore_threads, share_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert share_threads(1) == 4  # one worker keeps them all
        assert torch.get_num_threads() == 4
        assert share_threads(2) == 4
        assert torch.get_num_threads() == 2
        restore_threads(4)
        share_threads(8)  # never below one
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_serving_workers_two_on_a_multicore_cpu_one_on_a_gpu():
    import torch

    from robertaops.api import serving_workers

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert serving_workers("cpu") == 2
        torch.set_num_threads(1)
        assert serving_workers("cpu") == 1
        assert serving_workers("cuda") == 1
    finally:
        torch.set_num_threads(before)
