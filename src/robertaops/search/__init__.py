"""Search over a model's embeddings, and batch embedding at scale.

An index lives in one directory (see `index.py`): FAISS vectors of every chunk of every document, the same
embeddings as a plain array, a BM25 index, SQLite for documents and metadata, and a manifest naming the model
that built it. Queries run dense, lexical or hybrid, optionally reranked by a cross-encoder. `batch.py` and
`spark.py` embed tables (CSV, JSONL, Parquet) into Parquet, locally in bounded memory or on Spark.
"""
