"""Batch embedding of a table (CSV, TSV, JSONL, Parquet) into Parquet, on this machine in bounded memory.

The input is read `chunk` rows at a time and each chunk is embedded through `Model.embed` (token-budget packing,
long texts windowed) and written as one Parquet row group, so memory stays flat whatever the row count. The output
keeps the input's columns and adds `embedding` (list<float32>), `model` and `model_version` (the weights' sha256):
rows embedded by different model versions can never be mixed up silently. Output goes to a `.partial` file renamed
at the end, so a failed run leaves no half-written Parquet behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from .sources import read_rows

CHUNK = 4096  # rows per chunk: ~0.5-1 MB of short text, many packed batches per model call


def output_columns(model) -> dict[str, str]:
    return {"model": model.name, "model_version": model.weights_sha256 or "unknown"}


def embed_frame(model, texts: list, text_column: str, *, truncate: bool = False, first_row: int = 0):
    """Embeddings (n, H) float32 for one chunk; every text must be a string (None/NaN is refused with its row)."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"row {first_row + i}: column {text_column!r} must be a string, got "
                                    f"{'null' if t is None else type(t).__name__}")
    return model.embed(list(texts), truncate=truncate)


def embed_local(model, source: str | Path, output: str | Path, *, text_column: str = "text", fmt: str | None = None,
                chunk: int = CHUNK, truncate: bool = False, progress: bool | None = None) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    out = Path(output)
    tmp = out.with_name(out.name + ".partial")
    extra = output_columns(model)
    writer = None
    rows = 0
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with tqdm(unit="row", desc="embedding", file=sys.stderr, disable=not show) as bar:
            for batch in read_rows(source, fmt, chunk):
                if rows == 0 and text_column not in batch[0]:
                    raise InvalidInputError(f"{source}: no text column {text_column!r}; columns: "
                                            f"{', '.join(map(str, batch[0]))} (choose with --text-column)")
                texts = [r.get(text_column) for r in batch]
                vectors = embed_frame(model, texts, text_column, truncate=truncate, first_row=rows)
                table = pa.Table.from_pylist(batch)
                dim = vectors.shape[1]
                flat = pa.array(vectors.reshape(-1), type=pa.float32())
                table = table.append_column("embedding", pa.FixedSizeListArray.from_arrays(flat, dim).cast(
                    pa.list_(pa.float32())))
                for name, value in extra.items():
                    table = table.append_column(name, pa.array([value] * len(batch), type=pa.string()))
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                elif table.schema != writer.schema:
                    table = table.cast(writer.schema)  # e.g. a column that was all-null in the first chunk
                writer.write_table(table)
                rows += len(batch)
                bar.update(len(batch))
        if writer is None:
            raise InvalidInputError(f"{source}: no rows to embed")
        writer.close()
        writer = None
        os.replace(tmp, out)
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"cannot embed {source} into {output}: {exc}") from None
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return {"rows": rows, "output": str(out), **extra}
