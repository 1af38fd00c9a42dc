"""Fine-tuning fixtures: tiny labelled files written in tmp dirs, and one tiny classifier trained once per session
(shared by the parity, serving, calibration and evaluate tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_helpers import quick, sentiment_rows, write_tsv


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("sentiment")
    return write_tsv(d / "train.tsv", sentiment_rows()), write_tsv(d / "dev.tsv", sentiment_rows(3)[:24])


@pytest.fixture(scope="session")
def tiny_roberta(make_checkpoint) -> Path:
    return make_checkpoint("roberta", "base")[0]


@pytest.fixture(scope="session")
def trained_classifier(tmp_path_factory, tiny_roberta, sentiment_files) -> tuple[Path, dict]:
    from robertaops.training.finetune import FinetuneArgs, finetune

    train, dev = sentiment_files
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    result = finetune(FinetuneArgs(task="classify", train=train, dev=dev, output=out, model=str(tiny_roberta),
                                   text_column="sentence", tracking_uri="none", progress=False, train_cfg=quick()))
    return out, result
