"""Fixtures shared by the pipeline tests: loaded models (once per session), labelled tiny checkpoints, real text.

Loading is the slow part of these tests, so every model here is session-scoped and shared; tests must not mutate
the models they get. Transformers / sentence-transformers are the oracles; our pipelines are what is tested.
"""

from __future__ import annotations

import copy
import gzip
import shutil

import pytest

MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


@pytest.fixture(scope="session")
def labelled_checkpoint(make_checkpoint, tmp_path_factory):
    """Factory: make_checkpoint with named labels -> (directory, transformers model in eval mode).

    make_checkpoint caches by hashable overrides, so labels (a dict in the HF config) are set here on a copy of its
    model, saved to a fresh directory with the same tokenizer files.
    """
    cache: dict = {}

    def make(model_type: str, task: str, labels: tuple[str, ...], seed: int = 0, **overrides):
        key = (model_type, task, labels, seed, tuple(sorted(overrides.items())))
        if key in cache:
            return cache[key]
        base_dir, base_model = make_checkpoint(model_type, task, seed=seed, num_labels=len(labels), **overrides)
        model = copy.deepcopy(base_model).eval()
        model.config.id2label = dict(enumerate(labels))
        model.config.label2id = {label: i for i, label in enumerate(labels)}
        directory = tmp_path_factory.mktemp(f"{model_type}-{task}-labelled")
        model.save_pretrained(directory)
        for path in base_dir.iterdir():
            if path.is_file() and path.name not in MODEL_FILES and not (directory / path.name).exists():
                shutil.copy(path, directory / path.name)
        cache[key] = (directory, model)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def default_model(default_model_dir):
    """all-MiniLM-L6-v2 through our loader (max_length 256, mean pooling, normalized)."""
    import robertaops as ro

    return ro.load(default_model_dir)


@pytest.fixture(scope="session")
def sentence_transformer(default_model_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(default_model_dir), device="cpu")


@pytest.fixture(scope="session")
def novels_model(novels_small):
    import robertaops as ro

    return ro.load(novels_small)


@pytest.fixture(scope="session")
def novel_words(data_dir) -> list[str]:
    """About 37,000 words of a real public-domain novel (the start of the pretraining corpus)."""
    with gzip.open(data_dir / "pretrain-corpus" / "part-00.txt.gz", "rt", encoding="utf-8") as f:
        return f.read(200_000).split()
