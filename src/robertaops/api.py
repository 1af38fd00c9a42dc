"""The Python API: `ro.load(...)` returns a `Model` whose methods are the task pipelines.

The server and the CLI call these same methods; nothing is implemented twice. Every method takes a list (or a
single text, returning a single result) and returns results in input order.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InvalidInputError, choices
from .model.amx import cpu_flags
from .model.checkpoint import build_model, read_sentence_transformers, save_model
from .model.config import EncoderConfig
from .model.manifest import MANIFEST, check_vocab, sha256_file, verify_manifest, write_manifest
from .model.packed import PackedLinear, drop_plain_weights, pack_linears, packing_supported
from .model.quantize import int8_compiled, int8_layer_kind, int8_matmul, int8_supported, is_quantized, quantize_int8
from .model.traced import trace_layers
from .pipelines import classify as classify_pipeline
from .pipelines.embed import embed as embed_pipeline
from .pipelines.embed import embed_tokens as embed_tokens_pipeline
from .pipelines.fill_mask import fill_mask as fill_mask_pipeline
from .pipelines.ner import ner as ner_pipeline
from .pipelines.rerank import rerank as rerank_pipeline
from .pipelines.runner import Runner
from .pipelines.similarity import similarity as similarity_pipeline
from .resolve import resolve
from .tokenizer import Text, Tokenizer

# dtype -> the floating type of weights and activations. int8: W8A8 Linears (model/quantize.py) between fp32 ops.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int8": torch.float32}
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json")


def _as_list(texts: Any, what: str = "texts", pairs: bool = False) -> tuple[list, bool]:
    """Accept one text or a list of them; remember which, so a single text gets a single result back.

    Where pairs make sense (`pairs=True`: classify, tokenize) a lone (a, b) tuple is one pair; elsewhere a tuple
    is just a sequence of texts."""
    if isinstance(texts, str):
        return [texts], True
    if pairs and isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts):
        return [texts], True
    if not isinstance(texts, list | tuple):
        raise InvalidInputError(f"{what} must be a string or a list of strings, got {type(texts).__name__}")
    return list(texts), False


class Model:
    """A loaded checkpoint: encoder, head, tokenizer and the settings that shape their use."""

    def __init__(self, runner: Runner, *, name: str, path: Path, pooling: str, normalize: bool, dtype: str):
        self.runner = runner
        self.name = name
        self.path = path
        self.pooling = pooling
        self.normalize_default = normalize
        self.dtype = dtype

    # -- facts --------------------------------------------------------------------------------------------------
    @property
    def config(self) -> EncoderConfig:
        return self.runner.cfg

    @property
    def tokenizer(self) -> Tokenizer:
        return self.runner.tokenizer

    @property
    def max_length(self) -> int:
        return self.runner.max_length

    @property
    def dimension(self) -> int:
        return self.config.hidden_size

    def info(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "name": self.name, "path": str(self.path), "model_type": cfg.model_type, "task": cfg.task,
            "layers": cfg.num_hidden_layers, "hidden_size": cfg.hidden_size, "heads": cfg.num_attention_heads,
            "vocab_size": cfg.vocab_size, "max_length": self.max_length, "stride": self.runner.stride,
            "pooling": self.pooling, "normalize": self.normalize_default, "labels": list(cfg.id2label),
            "problem_type": cfg.resolved_problem_type if cfg.id2label else None, "dtype": self.dtype,
            "device": str(self.runner.device), "parameters": sum(p.numel() for p in self.runner.model.parameters()),
            "weights_sha256": self.weights_sha256, "matmul": self.matmul,
            "int8_layer": self.int8_layer,
        }

    @property
    def matmul(self) -> str:
        """What runs the encoder's Linears: "amx" or "int_mm" (int8), "onednn-packed" (CPU fp32/bf16 with packed
        weights), else "torch" (F.linear: GPUs, ROBERTAOPS_PACK=0)."""
        model = self.runner.model
        return int8_matmul(model) or ("onednn-packed" if any(isinstance(m, PackedLinear) for m in model.modules())
                                      else "torch")

    @property
    def int8_layer(self) -> str | None:
        """For int8 models, what runs the layers (`quantize.int8_layer_kind`): "aot", "torch.compile" or "eager"."""
        return int8_layer_kind() if self.dtype == "int8" else None

    @functools.cached_property
    def weights_sha256(self) -> str | None:
        """sha256 of the weights file (of the shard index for sharded checkpoints), computed once."""
        for name in ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"):
            if (self.path / name).exists():
                return sha256_file(self.path / name)
        return None

    def warm_up(self) -> None:
        """Run a forward pass for each batch layout the encoder tells apart, so that what compiles per layout (the
        int8 layer) compiles now and not under the first request that brings it (a server calls this at start)."""
        self.runner.warm_up()

    def drop_plain_weights(self) -> int:
        """For a process that only runs inference (a server): free the plain copy of every weight that also sits
        packed for oneDNN (CPU fp32/bf16), a third of roberta-base's memory; returns the bytes freed. Outputs do
        not change. Training it, saving it or moving it brings the plain weights back, rebuilt exactly."""
        return drop_plain_weights(self.runner.model)

    def trace_layers(self) -> int:
        """For CPU inference beside other Python threads (a server): run each encoder layer as one TorchScript call
        that does not hold the GIL, with plain Linears (MKL) instead of packed ones; outputs do not change. Returns the
        number of layers traced (0 for int8 models and off the CPU)."""
        if self.dtype == "int8" or self.runner.device.type != "cpu":
            return 0
        return trace_layers(self.runner.model)

    # -- pipelines ----------------------------------------------------------------------------------------------
    def embed(self, texts, pooling: str | None = None, normalize: bool | None = None, truncate: bool = False,
              stride: int | None = None) -> np.ndarray:
        """(n, hidden) float32; a single text gives (hidden,). pooling None = the model's own."""
        items, single = _as_list(texts)
        out = embed_pipeline(self.runner, items, pooling=pooling or self.pooling,
                             normalize=self.normalize_default if normalize is None else normalize,
                             truncate=truncate, stride=stride)
        return out[0] if single else out

    def embed_all(self, texts, truncate: bool = False, stride: int | None = None):
        """Every token's hidden state: a (T, hidden) array per text (a single text gives one array)."""
        items, single = _as_list(texts)
        out = embed_tokens_pipeline(self.runner, items, truncate=truncate, stride=stride)
        return out[0] if single else out

    def classify(self, texts, top_k: int | None = 1, raw_scores: bool = False, truncate: bool = False,
                 stride: int | None = None):
        items, single = _as_list(texts, pairs=True)
        out = classify_pipeline.classify(self.runner, items, top_k=top_k, raw_scores=raw_scores,
                                         truncate=truncate, stride=stride)
        return out[0] if single else out

    def ner(self, texts, aggregation: str = "simple", truncate: bool = False, stride: int | None = None):
        items, single = _as_list(texts)
        out = ner_pipeline(self.runner, items, aggregation=aggregation, truncate=truncate, stride=stride)
        return out[0] if single else out

    def fill_mask(self, texts, top_k: int = 5, truncate: bool = False):
        items, single = _as_list(texts)
        out = fill_mask_pipeline(self.runner, items, top_k=top_k, truncate=truncate)
        return out[0] if single else out

    def rerank(self, query: str, documents: list[str], raw_scores: bool = False, return_text: bool = False,
               truncate: bool = False, top_n: int | None = None) -> list[dict]:
        docs, _ = _as_list(documents, "documents")
        return rerank_pipeline(self.runner, query, docs, pooling=self.pooling, raw_scores=raw_scores,
                               return_text=return_text, truncate=truncate, top_n=top_n)

    def similarity(self, a, b, truncate: bool = False) -> np.ndarray:
        left, _ = _as_list(a)
        right, _ = _as_list(b)
        return similarity_pipeline(self.runner, left, right, pooling=self.pooling, truncate=truncate)

    def tokenize(self, texts: Text | list[Text], add_special_tokens: bool = True):
        items, single = _as_list(texts, pairs=True)
        encodings = self.tokenizer.encode(items)
        out = [e.ids if add_special_tokens else [t for t, s in zip(e.ids, e.special_tokens_mask, strict=True) if not s]
               for e in encodings]
        return out[0] if single else out

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write an HF-layout checkpoint (config, safetensors, tokenizer files) that transformers also loads."""
        out = Path(directory)
        save_model(self.runner.model, out)
        for name in TOKENIZER_FILES:
            if (self.path / name).exists() and not (out / name).exists():
                (out / name).write_bytes((self.path / name).read_bytes())
        write_manifest(out)  # sha256 of what belongs together: ro.load verifies it
        return out

    def __repr__(self) -> str:
        cfg = self.config
        shape = f"{cfg.num_hidden_layers}L/{cfg.hidden_size}H"
        return f"Model({self.name!r}, {cfg.model_type} {cfg.task}, {shape}, {self.dtype})"


def share_threads(callers: int) -> int:
    """Split torch's intra-op threads evenly between `callers` that run the model at the same time. Returns the
    count before, for `restore_threads` once they stop."""
    before = torch.get_num_threads()
    if callers > 1:
        torch.set_num_threads(max(1, before // callers))
    return before


def restore_threads(count: int) -> None:
    torch.set_num_threads(count)


def serving_workers(device: str | torch.device) -> int:
    """How many batches a server runs at once per model unless told: two on a CPU with two or more threads (each
    batch on half of them), one on a GPU. One forward spread over every core stalls whenever another thread takes
    one of them, at the next barrier — and a server always has another thread, its event loop: on 2 cores two
    single-threaded workers served 15-25% more short requests than one two-threaded one (benchmarks/RESULTS.md)."""
    return 2 if torch.device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1


def auto_dtype(device: str | torch.device) -> str:
    """The fastest path that keeps outputs within bounds on this hardware (benchmarks/RESULTS.md, "dtype=auto"):
    a GPU runs bfloat16 (float16 without bf16 support). On a CPU:
    - with AMX tiles for bf16 (Intel Xeon 4th gen and later), bfloat16: oneDNN runs it on AMX, within a noisy
      machine's run-to-run spread of our int8 on batches (int8 / bf16 0.72-1.65x over four runs on a 2-core Xeon;
      int8 is ahead at batch 1), and closer to fp32 (cosine 0.99997 against int8's 0.9998);
    - else int8 when it has int8 matmuls and the int8 kernels compile (measured on a Zen 5: 1.1-1.4x bf16, cosine
      to fp32 >= 0.994, SST-2 -0.12 pt);
    - else bfloat16 with native bf16 dot products (AVX512-BF16; ~2x fp32), else float32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if dev.type != "cpu":
        return "float32"
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "bfloat16"
    if int8_supported() and int8_compiled():
        return "int8"
    return "bfloat16" if "avx512_bf16" in flags else "float32"


def traced_by_default(device: str, dtype: str) -> bool:
    """Whether a server traces a model's layers (`Model.trace_layers`) when not told: float32 on an Intel CPU. There,
    MKL's fp32 matmul runs level with oneDNN's packed one (one thread, 0.96-1.05x), and workers that do not wait for
    the GIL served 1.09x as many short requests (benchmarks/RESULTS.md). On the AMD Zen 5 the packed matmul was
    1.15-1.5x faster, and a bf16 server on the Xeon gained nothing (0.97x): those keep the packed eager path."""
    return torch.device(device).type == "cpu" and dtype == "float32" and "GenuineIntel" in cpu_flags()  # vendor_id


def load(name_or_path: str | os.PathLike | None = None, *, device: str = "cpu", dtype: str = "float32",
         max_length: int | None = None, stride: int | None = None, max_batch_tokens: int | None = None,
         verify: bool = True) -> Model:
    """Load a checkpoint directory, hub id, or (None) the default model, ready for inference.

    max_batch_tokens: padded tokens per forward pass (default: 2,048 on CPU, 16,384 on GPU).
    verify: check the files' sha256 against manifest.json when there is one (about 0.2 s per 90 MB; sizes are
    always checked). A tokenizer that does not match config.json is refused either way."""
    if dtype == "auto":
        dtype = auto_dtype(device)
    if dtype not in DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}; choose {choices([*DTYPES, 'auto'])}")
    if dtype == "int8" and torch.device(device).type != "cpu":
        raise InvalidInputError(f"dtype int8 runs on the CPU only; on {device} use bfloat16 or float16")
    path = resolve(name_or_path)
    if (path / MANIFEST).exists():
        verify_manifest(path, hashes=verify)
    cfg = EncoderConfig.from_file(path / "config.json")
    st = read_sentence_transformers(path)
    net = build_model(path, cfg)
    if is_quantized(net):  # a checkpoint written by `robertaops quantize` is int8 whatever was asked
        dtype = "int8"
    elif dtype == "int8":
        quantize_int8(net)
    net = net.to(device=device, dtype=DTYPES[dtype])  # int8 buffers stay int8: .to(dtype) casts floats only
    # oneDNN with packed weights: the same fp32 arithmetic, 1.15-2x faster than MKL here, for the packed copy's
    # memory (ROBERTAOPS_PACK=0 keeps plain Linears).
    packing = os.environ.get("ROBERTAOPS_PACK", "1") != "0" and torch.device(device).type == "cpu"
    if packing and dtype != "int8" and packing_supported(DTYPES[dtype]):
        pack_linears(net)
    tokenizer = Tokenizer.from_dir(path, family=cfg.family, type_vocab_size=cfg.type_vocab_size)
    pad = next((i for i in map(tokenizer.tok.token_to_id, ("<pad>", "[PAD]")) if i is not None), None)
    check_vocab(path, config_vocab=cfg.vocab_size, tokenizer_vocab=tokenizer.vocab_size, config_pad=cfg.pad_token_id,
                tokenizer_pad=pad)
    limit = min(x for x in (cfg.max_tokens, st.max_seq_length) if x)
    if max_length is not None:
        if not 4 <= max_length <= cfg.max_tokens:
            raise InvalidInputError(
                f"max_length must be between 4 and {cfg.max_tokens} for this model, got {max_length}"
            )
        limit = max_length
    stride = limit // 8 if stride is None else stride
    runner = Runner(net, tokenizer, max_length=limit, stride=stride, max_batch_tokens=max_batch_tokens, device=device)
    pooling = st.pooling or "mean"  # what sentence-transformers picks for a plain checkpoint
    name = str(name_or_path) if name_or_path is not None else "sentence-transformers/all-MiniLM-L6-v2"
    return Model(runner, name=name, path=path, pooling=pooling, normalize=True, dtype=dtype)
