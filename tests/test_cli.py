"""The `robertaops` CLI: outputs equal the Python API's; user errors exit 2 with one line and no traceback.

Most tests run in-process with typer's CliRunner; a few run the installed console script as a real subprocess.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import robertaops as ro
from robertaops import cli, cli_io
from robertaops.errors import InvalidInputError, UnsupportedTaskError
from robertaops.model.packed import packing_supported

TEXTS = ["The quick brown fox jumps over the lazy dog.", "", "Embeddings map text to vectors.", "ünïcödé ✓"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


_load_once = functools.cache(cli.load_model)


def load(model=None, dtype=cli.DType.float32, max_length=None, batch_tokens=None, device="cpu"):
    """cli.load_model, each (model, options) loaded once: commands and the API oracle share it to keep this fast."""
    return _load_once(None if model is None else str(model), cli.DType(dtype), max_length, batch_tokens, device)


@pytest.fixture(autouse=True)
def reuse_loaded_models(monkeypatch):
    monkeypatch.setattr(cli, "load_model", load)


@pytest.fixture(scope="module")
def default_model():
    return load()


def invoke(runner: CliRunner, *args: str, input: str | bytes | None = None, code: int = 0):
    result = runner.invoke(cli.app, [str(a) for a in args], input=input)
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result


def rows(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def one_error_line(result, *fragments: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# -- input parsing (no model) ---------------------------------------------------------------------------------------
def chunks_of(path: Path, **kwargs) -> list[tuple[int, list]]:
    return [(start, items) for start, items, _ in cli.Inputs(str(path), **kwargs)]


def test_plain_text_keeps_interior_blank_lines_and_drops_the_final_newline(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"\xef\xbb\xbf\n a\r\n\nb\n")  # BOM, leading blank, CRLF, interior blank, final newline
    assert chunks_of(path) == [(0, ["", " a", "", "b"])]
    path.write_bytes(b"a\nb")  # no final newline
    assert chunks_of(path) == [(0, ["a", "b"])]


def test_inputs_are_chunked_with_running_indices(tmp_path):
    path = write(tmp_path / "in.txt", ["", "", "a", "b", "", "c"])
    assert chunks_of(path, chunk=2) == [(0, ["", ""]), (2, ["a", "b"]), (4, ["", "c"])]


def test_jsonl_is_detected_by_the_first_line_and_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path / "in.jsonl", ["", '{"text": "a", "id": 7}', "", '{"text": "{b}", "text_pair": "c"}'])
    assert chunks_of(path, pairs=True) == [(0, ["a", ("{b}", "c")])]
    with pytest.raises(InvalidInputError, match='line 4: "text_pair" is accepted only by classify and tokenize'):
        chunks_of(path)
    text = write(tmp_path / "in.txt", ["{not json}", '{"text": "x"}'])  # plain text: a later JSON line is text
    assert chunks_of(text) == [(0, ["{not json}", '{"text": "x"}'])]


def test_a_broken_jsonl_line_names_its_number(tmp_path):
    path = write(tmp_path / "in.jsonl", ['{"text": "a"}', "plain", '{"text": 3}'])
    with pytest.raises(InvalidInputError, match="line 2 is not a JSON object"):
        chunks_of(path)
    path = write(tmp_path / "in.jsonl", ['{"text": "a"}', '{"text": 3}'])
    with pytest.raises(InvalidInputError, match='line 2: "text" must be a string, got int'):
        chunks_of(path)


# -- commands ---------------------------------------------------------------------------------------------------------
def test_embed_file_to_jsonl_equals_the_api(runner, default_model, tmp_path):
    result = invoke(runner, "embed", write(tmp_path / "in.txt", TEXTS))
    out = rows(result)
    assert [r["index"] for r in out] == list(range(len(TEXTS)))
    np.testing.assert_allclose(np.array([r["embedding"] for r in out]), default_model.embed(TEXTS), atol=1e-5)


def test_embed_options_reach_the_pipeline(runner, default_model, tmp_path):
    result = invoke(runner, "embed", write(tmp_path / "in.txt", TEXTS), "--pooling", "cls", "--no-normalize",
                    "--max-length", "8", "--truncate", "-o", tmp_path / "out.jsonl")
    assert result.stdout == ""
    got = np.array([json.loads(line)["embedding"] for line in (tmp_path / "out.jsonl").read_text().splitlines()])
    want = load(max_length=8).embed(TEXTS, pooling="cls", normalize=False, truncate=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, default_model.embed(TEXTS), atol=1e-3)


def test_embed_to_npy(runner, default_model, tmp_path):
    out = tmp_path / "out.npy"
    invoke(runner, "embed", write(tmp_path / "in.txt", TEXTS), "--output", out)
    array = np.load(out)
    assert array.shape == (len(TEXTS), default_model.dimension) and array.dtype == np.float32
    np.testing.assert_allclose(array, default_model.embed(TEXTS), atol=1e-5)
    assert not (tmp_path / "out.npy.partial").exists()


def test_embed_across_chunks_equals_one_call(runner, default_model, tmp_path, monkeypatch):
    monkeypatch.setattr(cli_io, "CHUNK", 3)
    texts = TEXTS * 2 + ["last"]
    out = tmp_path / "out.npy"
    invoke(runner, "embed", write(tmp_path / "in.txt", texts), "-o", out)
    np.testing.assert_allclose(np.load(out), default_model.embed(texts), atol=1e-5)


def test_embed_from_stdin(runner, default_model):
    for args in (["embed"], ["embed", "-"]):
        out = rows(invoke(runner, *args, input="".join(t + "\n" for t in TEXTS)))
        np.testing.assert_allclose(np.array([r["embedding"] for r in out]), default_model.embed(TEXTS), atol=1e-5)


def test_embed_jsonl_input(runner, default_model, tmp_path):
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(TEXTS)]
    out = rows(invoke(runner, "embed", write(tmp_path / "in.jsonl", lines[:2] + [""] + lines[2:])))
    assert [r["index"] for r in out] == list(range(len(TEXTS)))
    np.testing.assert_allclose(np.array([r["embedding"] for r in out]), default_model.embed(TEXTS), atol=1e-5)


def test_tokenize_equals_the_api(runner, default_model, tmp_path):
    path = write(tmp_path / "in.txt", TEXTS)
    out = rows(invoke(runner, "tokenize", path))
    assert [r["text"] for r in out] == TEXTS
    assert [r["ids"] for r in out] == default_model.tokenize(TEXTS)
    assert out[0]["tokens"][0] == "[CLS]" and out[0]["tokens"][-1] == "[SEP]"
    bare = rows(invoke(runner, "tokenize", path, "--no-special-tokens"))
    assert [r["ids"] for r in bare] == default_model.tokenize(TEXTS, add_special_tokens=False)
    assert all(len(r["ids"]) == len(r["tokens"]) for r in bare)


def test_info_is_one_json_object(runner, default_model):
    info = json.loads(invoke(runner, "info").stdout)
    assert info["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (info["model_type"], info["task"], info["hidden_size"], info["layers"]) == ("bert", "base", 384, 6)
    weights = (default_model.path / "model.safetensors").read_bytes()
    assert info["dtype"] == "float32" and info["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    packed = packing_supported(torch.float32)  # fp32 on the CPU: oneDNN with packed weights where torch has the op
    assert info["matmul"] == ("onednn-packed" if packed else "torch")
    assert json.loads(invoke(runner, "info", "--dtype", "bfloat16").stdout)["dtype"] == "bfloat16"


def test_version(runner):
    assert invoke(runner, "version").stdout.strip() == f"robertaops {ro.__version__}"


def test_classify_with_a_tiny_checkpoint(runner, make_checkpoint, tmp_path):
    directory, _ = make_checkpoint("roberta", "sequence_classification")
    lines = [json.dumps({"text": "a fine film"}), json.dumps({"text": "is it?", "text_pair": "yes it is"})]
    result = invoke(runner, "classify", write(tmp_path / "in.jsonl", lines), "--model", directory, "--top-k", "0")
    m = load(directory)
    want = m.classify(["a fine film", ("is it?", "yes it is")], top_k=None)
    got = [r["labels"] for r in rows(result)]
    assert [[x["label"] for x in r] for r in got] == [[x["label"] for x in r] for r in want]
    np.testing.assert_allclose([[x["score"] for x in r] for r in got], [[x["score"] for x in r] for r in want],
                               atol=1e-5)
    raw = rows(invoke(runner, "classify", "--model", directory, "--raw-scores", input="a fine film\n"))
    assert len(raw[0]["labels"]) == 1
    assert raw[0]["labels"][0]["score"] == pytest.approx(m.classify("a fine film", raw_scores=True)[0]["score"],
                                                         abs=1e-5)


def test_ner_with_a_tiny_checkpoint(runner, make_checkpoint, tmp_path):
    directory, _ = make_checkpoint("roberta", "token_classification")
    texts = ["Ada Lovelace was born in London.", "", "Paris is in France."]
    path = write(tmp_path / "in.txt", texts)
    m = load(directory)
    for aggregation in ("none", "average"):
        result = invoke(runner, "ner", path, "--model", directory, "--aggregation", aggregation)
        want = json.loads(json.dumps(m.ner(texts, aggregation=aggregation)))
        got = [r["entities"] for r in rows(result)]
        assert [[{k: v for k, v in e.items() if k != "score"} for e in r] for r in got] == \
            [[{k: v for k, v in e.items() if k != "score"} for e in r] for r in want]
        np.testing.assert_allclose([e["score"] for r in got for e in r], [e["score"] for r in want for e in r],
                                   atol=1e-5)


def test_fill_mask_with_the_pretrained_roberta(runner, novels_small):
    texts = ["She opened the <mask> and walked in.", "The <mask> was <mask> and cold."]
    result = invoke(runner, "fill-mask", "--model", novels_small, "--top-k", "3",
                    input="".join(t + "\n" for t in texts))
    got = [r["predictions"] for r in rows(result)]
    want = load(novels_small).fill_mask(texts, top_k=3)
    assert [p["token_str"] for p in got[0]] == [p["token_str"] for p in want[0]]
    assert len(got[1]) == 2 and [p["token"] for p in got[1][1]] == [p["token"] for p in want[1][1]]
    assert got[0][0]["score"] == pytest.approx(want[0][0]["score"], abs=1e-5)


# -- errors: one red line on stderr, exit 2, never a traceback -----------------------------------------------------
def test_invalid_utf8_names_the_line(runner, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\nbad \xff\xfe here\n")
    one_error_line(invoke(runner, "embed", path, code=2), "line 3", "not valid UTF-8")


def test_unknown_model_path(runner, tmp_path):
    result = invoke(runner, "embed", "--model", tmp_path / "no-such-model", input="x\n", code=2)
    one_error_line(result, "no-such-model", "does not exist")


def test_missing_input_file(runner, tmp_path):
    one_error_line(invoke(runner, "embed", tmp_path / "missing.txt", code=2), "missing.txt", "does not exist")


def test_classify_without_a_classification_head(runner, default_model):
    with pytest.raises(UnsupportedTaskError) as raised:
        default_model.classify(["x"])
    one_error_line(invoke(runner, "classify", input="x\n", code=2), str(raised.value))


def test_an_error_in_a_later_chunk_says_where_numbering_starts(runner, novels_small, monkeypatch):
    monkeypatch.setattr(cli_io, "CHUNK", 2)
    result = invoke(runner, "fill-mask", "--model", novels_small, input="a <mask>\nb <mask>\nc <mask>\nno mask\n",
                    code=2)
    one_error_line(result, "input 1 has no <mask>", "count from input 2")


def test_bad_usage_is_one_line(runner):
    one_error_line(invoke(runner, "embed", "--pooling", "median", input="x\n", code=2), "--pooling", "median")


def test_unexpected_errors_exit_1_without_traceback(runner, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "load_model", broken)
    one_error_line(invoke(runner, "embed", input="x\n", code=1), "internal error: RuntimeError: boom")


def test_failed_run_leaves_no_output_file(runner, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\n\xff\n")
    invoke(runner, "embed", path, "-o", tmp_path / "out.jsonl", code=2)
    assert list(tmp_path.iterdir()) == [path]


def test_empty_input_gives_empty_output(runner, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert invoke(runner, "embed", empty).stdout == ""
    invoke(runner, "embed", empty, "-o", tmp_path / "empty.npy")
    assert np.load(tmp_path / "empty.npy").shape == (0, 384)


# -- the installed console script -------------------------------------------------------------------------------------
def console_script() -> str:
    found = shutil.which("robertaops") or str(Path(sys.executable).parent / "robertaops")
    if not os.path.exists(found):
        pytest.skip("the robertaops console script is not installed (pip install -e .)")
    return found


def test_console_script_embeds_stdin(default_model):
    proc = subprocess.run([console_script(), "embed"], input="".join(t + "\n" for t in TEXTS).encode(),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    got = np.array([json.loads(line)["embedding"] for line in proc.stdout.decode().splitlines()])
    np.testing.assert_allclose(got, default_model.embed(TEXTS), atol=1e-5)


def test_console_script_user_error_has_no_traceback(tmp_path):
    path = tmp_path / "missing.txt"  # fails before torch is even imported, so this stays fast
    proc = subprocess.run([console_script(), "tokenize", str(path)], capture_output=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == f"error: input file {str(path)!r} does not exist"
    assert proc.stdout == b""


def test_help_does_not_import_torch():
    code = "import sys; from robertaops.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    proc = subprocess.run([console_script(), "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"fill-mask" in proc.stdout
