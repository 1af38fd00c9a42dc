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
