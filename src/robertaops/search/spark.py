"""Batch embedding on Spark: `mapInPandas`, the model loaded once per Python worker.

The same per-chunk function as the local engine (`batch.embed_frame`) runs inside each Spark task on pandas
batches, so Spark output equals local output row for row. Spark reuses Python workers between tasks
(spark.python.worker.reuse, on by default), and the model is cached in a module global keyed by its path, so each
worker loads it once, not once per task or batch. On a cluster the model path must exist on every executor (a
shared filesystem, or ship it with `--archives`); see docs/search.md for a `spark-submit` example.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .batch import embed_frame, output_columns
from .sources import format_of

_MODELS: dict[tuple, Any] = {}  # per Python worker: (model, max_length) -> Model


def _model(source: str | None, max_length: int | None):
    key = (source, max_length)
    if key not in _MODELS:
        from ..api import load

        _MODELS[key] = load(source, max_length=max_length)
    return _MODELS[key]


def read_frame(spark, source: str, fmt: str | None = None):
    """A Spark DataFrame from CSV/TSV (header, all strings), JSONL or Parquet."""
    kind = "parquet" if "://" not in source and Path(source).is_dir() else format_of(Path(source), fmt)
    if kind == "parquet":
        return spark.read.parquet(source)
    if kind == "jsonl":
        return spark.read.json(source)
    return spark.read.option("header", True).option("sep", "\t" if kind == "tsv" else ",") \
        .option("multiLine", True).option("escape", '"').csv(source)


def embed_spark(source: str, output: str, *, text_column: str = "text", model_source: str | None = None,
                max_length: int | None = None, fmt: str | None = None, truncate: bool = False,
                master: str | None = None, spark=None) -> dict[str, Any]:
    """Embed `source` into Parquet at `output` (a directory of parts, Spark's convention). Returns a summary."""
    from pyspark.sql import SparkSession
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    if "://" not in source and not Path(source).exists():  # hdfs://, s3a://: Spark checks
        raise InvalidInputError(f"input file {source!r} does not exist")
    if spark is None:
        builder = SparkSession.builder.appName("robertaops-batch-embed")
        if master:
            builder = builder.master(master)
        spark = builder.getOrCreate()
    df = read_frame(spark, source, fmt)
    if text_column not in df.columns:
        raise InvalidInputError(f"{source}: no text column {text_column!r}; columns: {', '.join(df.columns)} "
                                "(choose with --text-column)")
    probe = _model(model_source, max_length)  # on the driver: fail early on a bad model, and name the version
    extra = output_columns(probe)
    schema = StructType(df.schema.fields + [StructField("embedding", ArrayType(FloatType())),
                                            StructField("model", StringType()), StructField("model_version",
                                                                                            StringType())])

    def embed_batches(frames):
        m = _model(model_source, max_length)
        for frame in frames:
            vectors = embed_frame(m, frame[text_column].tolist(), text_column, truncate=truncate)
            frame = frame.copy()
            frame["embedding"] = list(vectors)
            for name, value in extra.items():
                frame[name] = value
            yield frame

    try:
        df.mapInPandas(embed_batches, schema).write.mode("overwrite").parquet(output)
    except Exception as exc:  # a worker's error comes back wrapped (PythonException, Py4JJavaError)
        lines = [ln for ln in str(exc).splitlines() if "Error:" in ln and "robertaops" in ln.lower()]
        detail = lines[-1].split("Error:", 1)[1].strip() if lines else " ".join(str(exc).split())[:300]
        raise InvalidInputError(f"the Spark job failed: {detail}") from None
    return {"output": output, **extra, "engine": "spark", "master": spark.sparkContext.master}
