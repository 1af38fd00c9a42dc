"""`robertaops index ...`, `robertaops search ...`, `robertaops batch embed`: JSON out, the eval JSON on the last
line, and user errors as one `error:` line with exit code 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from robertaops import cli


@pytest.fixture
def run():
    runner = CliRunner()

    def go(*args: str) -> str:
        result = runner.invoke(cli.app, [str(a) for a in args], standalone_mode=False)
        # standalone_mode=False: the app returns its exit code (2 for a user error) instead of exiting
        assert result.exit_code == 0 and result.return_value in (None, 0), result.output
        return result.output

    return go


def test_build_search_info_eval_delete(run, tmp_path, corpus, tiny_model):
    index = tmp_path / "ix"
    built = json.loads(run("index", "build", "--corpus", corpus, "--index", index, "--model", tiny_model.path))
    assert built["documents"] == 5 and built["kind"] == "flat"
    lines = run("search", "Eiffel tower", "--index", index, "--mode", "lexical", "-k", "2").strip().splitlines()
    first = json.loads(lines[0])
    assert first["rank"] == 1 and first["id"] == "paris" and "text" in first["chunk"]
    dense = run("search", "cats", "--index", index, "--filter", "lang=fr").strip().splitlines()
    assert [json.loads(x)["id"] for x in dense] == ["paris"]
    info = json.loads(run("index", "info", "--index", index))
    assert info["model"]["weights_sha256"] == tiny_model.weights_sha256
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "Eiffel tower in Paris"}\n{"_id": "q2", "text": "x"}\n')
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tparis\t1\n")
    out = run("search", "eval", "--index", index, "--queries", tmp_path / "q.jsonl", "--qrels",
              tmp_path / "qrels.tsv", "--mode", "lexical")
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics == {"mode": "lexical", "ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0, "queries": 1}
    assert json.loads(run("index", "delete", "--index", index, "paris"))["deleted"] == 1
    (tmp_path / "more.jsonl").write_text('{"_id": "new", "text": "a new document"}\n')
    assert json.loads(run("index", "add", "--corpus", tmp_path / "more.jsonl", "--index", index))["added"] == 1


def test_user_errors_exit_2(tmp_path, corpus, capsys):
    def fails(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            cli.app([str(a) for a in args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err
        return err

    assert "no search index" in fails("search", "x", "--index", tmp_path / "none")
    assert "no search index" in fails("index", "info", "--index", tmp_path / "none")
    assert "does not exist" in fails("index", "build", "--corpus", tmp_path / "none.jsonl", "--index", tmp_path / "i")
    assert "no text column" in fails("index", "build", "--corpus", corpus, "--index", tmp_path / "i",
                                     "--text-column", "body")
    assert "does not exist" in fails("batch", "embed", "--input", tmp_path / "none.csv", "--output",
                                     tmp_path / "o.parquet")


def test_batch_embed_local(run, tmp_path, tiny_model):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2], "sentence": ["hello world", "goodbye"]}).to_csv(src, index=False)
    summary = json.loads(run("batch", "embed", "--input", src, "--output", tmp_path / "out.parquet",
                             "--text-column", "sentence", "--model", tiny_model.path))
    assert summary["rows"] == 2
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out.columns) == ["id", "sentence", "embedding", "model", "model_version"]
