"""Pretraining end to end on a tiny model: exact resume after SIGKILL, checkpoints that ro.load and transformers read,
continued pretraining, tokenizer training, and the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robertaops.model.checkpoint import build_model
from robertaops.training.pretrain import PretrainArgs, pretrain
from robertaops.training.tokenizer_train import train_tokenizer

WORDS = ("the a man woman house door night storm river king queen dog cat walked saw opened closed ran said "
         "old young dark bright quickly slowly and but then to of in on with").split()

# Child process for the kill test: runs pretrain and SIGKILLs itself right after logging step `kill_at`.
CHILD = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from robertaops.training.pretrain import PretrainArgs, pretrain
args, kill_at = PretrainArgs(**json.loads(sys.argv[1])), int(sys.argv[2])
def on_log(record):
    if record["step"] == kill_at and "loss" in record:
        os.kill(os.getpid(), signal.SIGKILL)
print(json.dumps(pretrain(args, Path("."), on_log=on_log)))
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small synthetic corpus: 3 documents of short paragraphs of 'sentences'."""
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("corpus")
    docs = []
    for _ in range(3):
        paras = [" ".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 12))).capitalize() + "."
                          for _ in range(rng.randint(1, 4))) for _ in range(60)]
        docs.append("\n".join(paras))
    path = root / "corpus.txt"
    path.write_text("\n\n".join(docs) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, corpus) -> dict:
    """A trained byte-level BPE tokenizer and a 2-layer, hidden-32 config for it."""
    root = tmp_path_factory.mktemp("tiny")
    summary = train_tokenizer(corpus, root / "tok", vocab_size=300, min_frequency=1)
    config = {"model_type": "roberta", "vocab_size": summary["vocab_size"], "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 34, "pad_token_id": 1,
              "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1, "architectures": ["RobertaForMaskedLM"]}
    (root / "config.json").write_text(json.dumps(config))
    return {"tokenizer": str(root / "tok"), "config": str(root / "config.json")}


def args_for(tiny, corpus, out, **kw) -> PretrainArgs:
    base = dict(data=str(corpus), output=str(out), tokenizer=tiny["tokenizer"], config=tiny["config"], max_length=32,
                batch_size=8, grad_accum=2, max_steps=12, lr=3e-3, log_every=1, save_every=4, eval_every=6,
                device="cpu", threads=1)
    base.update(kw)
    return PretrainArgs(**base)


def run_child(args: PretrainArgs, kill_at: int = -1) -> subprocess.CompletedProcess:
    from dataclasses import asdict

    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(asdict(args)), str(kill_at)],
                          capture_output=True, text=True, timeout=120)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_sigkill_and_resume_gives_the_same_loss_curve(tmp_path, tiny, corpus):
    straight = run_child(args_for(tiny, corpus, tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr
    killed = run_child(args_for(tiny, corpus, tmp_path / "b"), kill_at=10)  # after checkpoint-8, before the end
    assert killed.returncode == -9, killed.stderr
    assert [r["step"] for r in records(tmp_path / "b") if "loss" in r][-1] == 10  # steps 9-10 were logged, then lost
    assert not (tmp_path / "b" / "metrics.json").exists()
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    resumed = run_child(args_for(tiny, corpus, tmp_path / "b", resume=True))
    assert resumed.returncode == 0, resumed.stderr

    a, b = records(tmp_path / "a"), records(tmp_path / "b")
    train_a = [(r["step"], r["loss"], r["acc"], r["lr"], r["tokens"]) for r in a if "loss" in r]
    train_b = [(r["step"], r["loss"], r["acc"], r["lr"], r["tokens"]) for r in b if "loss" in r]
    assert [s[0] for s in train_b] == list(range(1, 13))  # each step logged once: the replayed ones replaced
    for ra, rb in zip(train_a, train_b, strict=True):
        assert ra[0] == rb[0] and ra[2:] == rb[2:]
        assert rb[1] == pytest.approx(ra[1], rel=1e-6, abs=1e-7)
    assert train_a[0][1] > train_a[-1][1] + 0.3  # and it learns something, so the comparison is not trivial
    evals_a = [r["eval_loss"] for r in a if "eval_loss" in r]
    evals_b = [r["eval_loss"] for r in b if "eval_loss" in r]
    assert len(evals_a) == 2 and evals_b == pytest.approx(evals_a, rel=1e-6)
    final_a, final_b = json.loads(straight.stdout.splitlines()[-1]), json.loads(resumed.stdout.splitlines()[-1])
    assert final_b["eval_accuracy"] == final_a["eval_accuracy"]


def test_checkpoint_loads_in_robertaops_and_transformers(tmp_path, tiny, corpus):
    import transformers

    import robertaops as ro

    out = tmp_path / "run"
    metrics = pretrain(args_for(tiny, corpus, out, max_steps=4, save_every=0), Path("."))
    assert metrics["step"] == 4 and 0 <= metrics["eval_accuracy"] <= 1 and metrics["eval_masked"] > 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"} <= \
        {p.name for p in out.iterdir()}
    preds = ro.load(str(out)).fill_mask("The old man opened the <mask>.")
    assert len(preds) == 5 and all(p["sequence"].startswith("The old man opened the") for p in preds)
    assert sorted((p["score"] for p in preds), reverse=True) == [p["score"] for p in preds]

    hf = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    ids = torch.tensor([[0, 40, 50, 60, 4, 70, 2]])  # (1, 7) <s> ... <mask> ... </s>
    mine = build_model(out)
    with torch.no_grad():
        want = hf(input_ids=ids).logits  # (1, 7, V)
        got = mine.mlm(mine(ids))  # (1, 7, V)
    assert want.shape[-1] == mine.cfg.vocab_size
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_continued_pretraining_from_a_checkpoint_lowers_its_loss(tmp_path, tiny, corpus):
    first = pretrain(args_for(tiny, corpus, tmp_path / "one", max_steps=6, save_every=0, eval_every=0), Path("."))
    again = pretrain(args_for(tiny, corpus, tmp_path / "two", config=None, model=str(tmp_path / "one"),
                              tokenizer=None, max_steps=6, save_every=0, eval_every=0), Path("."))
    assert again["eval_loss"] < first["eval_loss"]
    assert again["params"] == first["params"]


def test_resume_refuses_changed_arguments(tmp_path, tiny, corpus):
    from robertaops.errors import InvalidInputError

    pretrain(args_for(tiny, corpus, tmp_path / "r", max_steps=4, save_every=2, eval_every=0), Path("."))
    with pytest.raises(InvalidInputError, match="changed arguments lr"):
        pretrain(args_for(tiny, corpus, tmp_path / "r", max_steps=4, save_every=2, lr=1e-3, resume=True), Path("."))
