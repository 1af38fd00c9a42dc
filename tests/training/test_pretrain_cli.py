"""`robertaops tokenizer train` and `robertaops pretrain` from the command line: outputs, last-line JSON, errors."""

from __future__ import annotations

import json
import random

from typer.testing import CliRunner

from robertaops import cli

WORDS = "the a man woman house door night storm river king walked saw opened closed and but then".split()


def invoke(*args, code=0):
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def test_tokenizer_train_then_pretrain(tmp_path):
    rng = random.Random(1)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"text": "\n".join(
        " ".join(rng.choices(WORDS, k=10)).capitalize() + "." for _ in range(20))}) + "\n" for _ in range(4)))
    tok = json.loads(invoke("tokenizer", "train", corpus, "-o", tmp_path / "tok", "--vocab-size", "300",
                            "--min-frequency", "1").stdout.splitlines()[-1])
    assert tok["vocab_size"] == 300 and (tmp_path / "tok" / "merges.txt").exists()
    config = {"model_type": "roberta", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 34, "type_vocab_size": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = invoke("pretrain", corpus, "-o", tmp_path / "run", "--tokenizer", tmp_path / "tok", "--config",
                    tmp_path / "config.json", "--max-length", "32", "--batch-size", "4", "--max-steps", "3",
                    "--device", "cpu", "--quiet", "--log-every", "1")
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["step"] == 3 and final["tokens"] > 0 and final["tokens_per_s"] > 0
    assert 0 <= final["eval_accuracy"] <= 1 and final["eval_loss"] > 0
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["architectures"] == ["RobertaForMaskedLM"]


def test_user_errors_are_one_line(tmp_path):
    result = invoke("pretrain", tmp_path / "missing.txt", "-o", tmp_path / "run", "--tokenizer", tmp_path, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.txt" in lines[0]
    (tmp_path / "c.txt").write_text("hello\n")
    result = invoke("tokenizer", "train", tmp_path / "c.txt", "-o", tmp_path / "t", "--vocab-size", "10", code=2)
    assert "vocab-size" in result.stderr or "vocab_size" in result.stderr
