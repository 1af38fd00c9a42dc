"""Fixtures for search tests: small models (the default one with short windows, so long documents split into
several chunks quickly), a tiny random RoBERTa, and a small corpus with metadata written in each input format."""

from __future__ import annotations

import json

import pytest

DOCS = [
    {"_id": "cats", "title": "Cats", "text": "Cats are small domesticated carnivorous mammals that purr.",
     "metadata": {"lang": "en", "year": 2020}},
    {"_id": "dogs", "title": "Dogs", "text": "Dogs are loyal companions, domesticated from wolves long ago.",
     "metadata": {"lang": "en", "year": 2021}},
    {"_id": "paris", "title": "Paris", "text": "Paris is the capital of France and home of the Eiffel tower.",
     "metadata": {"lang": "fr", "year": 2021}},
    {"_id": "long", "title": "A long report",
     "text": "The committee met on Tuesday to discuss the annual budget and the parking rules. " * 3
     + "Volcanoes erupt when magma rises through the crust and lava flows down the mountain. "
     + "Afterwards the minutes were approved and the meeting was closed by the chair. " * 3,
     "metadata": {"lang": "en", "year": 2019}},
    {"_id": "python", "title": "", "text": "Python is a programming language with readable syntax.",
     "metadata": {"lang": "en", "year": 2022}},
]


@pytest.fixture(scope="session")
def docs() -> list[dict]:
    return DOCS


@pytest.fixture(scope="session")
def short_model(default_model_dir):
    """all-MiniLM-L6-v2 with 32-token windows: the long document becomes several chunks."""
    import robertaops as ro

    return ro.load(default_model_dir, max_length=32, stride=4)


@pytest.fixture(scope="session")
def tiny_model(make_checkpoint):
    import robertaops as ro

    return ro.load(make_checkpoint("roberta", "base")[0])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory, corpus, short_model, default_model_dir):
    """An index over the corpus built with short_model (read-only for tests: copy it before writing)."""
    from robertaops.search import writer
    from robertaops.search.sources import read_docs

    path = tmp_path_factory.mktemp("idx") / "index"
    writer.build(path, read_docs(corpus), short_model, str(default_model_dir), progress=False)
    return path


@pytest.fixture
def index_copy(built, tmp_path):
    import shutil

    dest = tmp_path / "index"
    shutil.copytree(built, dest)
    return dest
