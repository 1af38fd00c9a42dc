"""Batch embedding: every input format to Parquet with the model columns, chunked streaming equal to one pass,
and Spark (local mode) equal to the local engine row for row."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from robertaops.errors import InvalidInputError
from robertaops.search.batch import embed_local

TEXTS = ["a short one", "The quick brown fox jumps over the lazy dog.", "ünïcödé ✓", "",
         " ".join(["A long sentence that needs several windows."] * 40)]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch") / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t, "group": i % 2}) + "\n" for i, t in enumerate(TEXTS)))
    return path


def read(path) -> pd.DataFrame:
    return pd.read_parquet(path)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_local_embeds_every_format(tmp_path, tiny_model, fmt):
    frame = pd.DataFrame({"id": range(len(TEXTS)), "body": TEXTS})
    src = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        frame.to_json(src, orient="records", lines=True, force_ascii=False)
    elif fmt == "csv":
        frame.to_csv(src, index=False)
    else:
        frame.to_parquet(src)
    summary = embed_local(tiny_model, src, tmp_path / "out.parquet", text_column="body", chunk=2, progress=False)
    out = read(tmp_path / "out.parquet")
    assert summary["rows"] == len(TEXTS) and list(out["body"].fillna("")) == TEXTS
    assert set(out["model"]) == {tiny_model.name} and set(out["model_version"]) == {tiny_model.weights_sha256}
    np.testing.assert_allclose(np.stack(out["embedding"]), tiny_model.embed(TEXTS), atol=1e-5)
    assert not list(tmp_path.glob("*.partial"))


def test_local_errors(tmp_path, tiny_model, table):
    with pytest.raises(InvalidInputError, match="no text column 'body'"):
        embed_local(tiny_model, table, tmp_path / "o.parquet", text_column="body", progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": null}\n')
    with pytest.raises(InvalidInputError, match="row 1"):
        embed_local(tiny_model, bad, tmp_path / "o.parquet", progress=False)
    assert not (tmp_path / "o.parquet").exists() and not list(tmp_path.glob("*.partial"))
    with pytest.raises(InvalidInputError, match="does not exist"):
        embed_local(tiny_model, tmp_path / "none.csv", tmp_path / "o.parquet", progress=False)


def test_spark_equals_local_row_for_row(tmp_path, tiny_model, table, monkeypatch):
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    from robertaops.search.spark import embed_spark

    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch.setenv("PYSPARK_PYTHON", os.environ.get("PYSPARK_PYTHON", __import__("sys").executable))
    embed_local(tiny_model, table, tmp_path / "local.parquet", chunk=2, progress=False)
    spark = (SparkSession.builder.master("local[2]").appName("robertaops-test")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate())
    try:
        summary = embed_spark(str(table), str(tmp_path / "spark.parquet"), model_source=str(tiny_model.path),
                              spark=spark)
        with pytest.raises(InvalidInputError, match="no text column"):
            embed_spark(str(table), str(tmp_path / "x.parquet"), text_column="nope",
                        model_source=str(tiny_model.path), spark=spark)
    finally:
        spark.stop()
    local, remote = read(tmp_path / "local.parquet"), read(tmp_path / "spark.parquet")
    assert summary["model_version"] == tiny_model.weights_sha256
    assert list(remote["id"]) == list(local["id"]) and list(remote["text"]) == list(local["text"])
    assert list(remote["model"]) == list(local["model"]) and list(remote["model_version"]) == list(
        local["model_version"])
    np.testing.assert_allclose(np.stack(remote["embedding"]), np.stack(local["embedding"]), atol=1e-5)
