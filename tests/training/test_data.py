"""Data readers: columns by name or index, header detection, pairs, JSONL, CSV quoting, CoNLL; bad rows name
file:line or are skipped and counted; unknown labels fail clearly. Plus the shared GLUE/STS/CoNLL files."""

from __future__ import annotations

import json

import pytest

from robertaops.errors import DataError
from robertaops.training.data import check_labels, label_list, read_conll, read_table


def test_tsv_by_name_and_by_index(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("id\tsentence\tlabel\n1\ta fine film\tpos\n2\ta bad one\tneg\n")
    by_name = read_table(p, text_column="sentence", label_column="label")
    by_index = read_table(p, text_column="1", label_column="2")
    assert [(r.text, r.label, r.line) for r in by_name.rows] == [("a fine film", "pos", 2), ("a bad one", "neg", 3)]
    assert [(r.text, r.label) for r in by_index.rows] == [(r.text, r.label) for r in by_name.rows]


def test_header_detected_with_index_specs(tmp_path):
    no_header = tmp_path / "n.tsv"
    no_header.write_text("a fine film\t1\na bad one\t0\nmeh\t1\n")
    assert len(read_table(no_header, text_column="0", label_column="1").rows) == 3
    scores = tmp_path / "s.tsv"
    scores.write_text("text\tscore\nx\t1.5\ny\t2\n")
    rows = read_table(scores, text_column="0", label_column="1", label_kind="score").rows
    assert [r.label for r in rows] == [1.5, 2.0]
    assert len(read_table(scores, text_column="0", label_column="1", label_kind="score", header=True).rows) == 2


def test_pairs_csv_quoting_and_bom(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('\ufeffq,a,label\n"Hi, there","He said ""yes""",1\nx,y,0\n', encoding="utf-8")
    rows = read_table(p, text_column="q", pair_column="a", label_column="label").rows
    assert (rows[0].text, rows[0].pair, rows[0].label) == ("Hi, there", 'He said "yes"', "1")


def test_jsonl_and_multi_label(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"text": "a", "labels": ["x", "y"]}) + "\n\n" + json.dumps({"text": "b", "labels": "y"}))
    rows = read_table(p, text_column="text", label_column="labels", label_kind="multi").rows
    assert [r.label for r in rows] == [["x", "y"], ["y"]]


def test_bad_row_names_file_and_line(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("sentence\tlabel\nfine\t1\nno label here\n\t0\nok\t0\n")
    with pytest.raises(DataError, match=rf"{p}:3: .*column 1 .* missing"):
        read_table(p, text_column="sentence", label_column="label")
    loaded = read_table(p, text_column="sentence", label_column="label", skip_bad_rows=True)
    assert [r.text for r in loaded.rows] == ["fine", "ok"] and loaded.skipped == 2
    assert loaded.skipped_at[1].startswith(f"{p}:4:")


def test_bad_json_and_bad_score(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": "b", \n')
    with pytest.raises(DataError, match=rf"{p}:2: not valid JSON"):
        read_table(p, text_column="text", label_column="label")
    s = tmp_path / "s.tsv"
    s.write_text("text\tscore\na\t1\nb\thigh\n")
    with pytest.raises(DataError, match=rf"{s}:3: label 'high' is not a number"):
        read_table(s, text_column="text", label_column="score", label_kind="score")


def test_missing_column_and_file(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_text("sentence\tlabel\na\t1\n")
    with pytest.raises(DataError, match="no column named 'text'"):
        read_table(p, text_column="text", label_column="label")
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "nope.tsv", text_column="text", label_column="label")


def test_conll(tmp_path):
    p = tmp_path / "d.txt"
    p.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
                 "Blackburn NNP I-NP I-PER\n")
    rows = read_conll(p).rows
    assert [(s.words, s.tags, s.line) for s in rows] == [
        (["EU", "rejects"], ["B-ORG", "O"], 3), (["Peter", "Blackburn"], ["B-PER", "I-PER"], 6)]
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects\n\nok O\n")
    with pytest.raises(DataError, match=rf"{bad}:2: a token line needs a tag"):
        read_conll(bad)
    assert read_conll(bad, skip_bad_rows=True).skipped == 1


def test_label_order_and_unknown_label(tmp_path):
    assert label_list(["10", "2", "1"], "class") == ["1", "2", "10"]
    assert label_list(["I-PER", "O", "B-PER", "B-LOC"], "tags") == ["O", "B-LOC", "B-PER", "I-PER"]
    p = tmp_path / "d.tsv"
    p.write_text("text\tlabel\na\tpos\nb\tmaybe\n")
    rows = read_table(p, text_column="text", label_column="label").rows
    with pytest.raises(DataError, match=rf"{p}:3: unknown label 'maybe'; the model knows 'neg', 'pos'"):
        check_labels(rows, {"neg": 0, "pos": 1}, p)


def test_shared_files(data_dir):
    sst = read_table(data_dir / "sst2" / "dev.tsv", text_column="sentence", label_column="label")
    assert len(sst.rows) == 872 and {r.label for r in sst.rows} == {"0", "1"}
    mrpc = read_table(data_dir / "mrpc" / "dev.tsv", text_column="#1 String", pair_column="#2 String",
                      label_column="Quality")
    assert len(mrpc.rows) == 408
    sts = read_table(data_dir / "stsb" / "sts-dev.csv", fmt="tsv", text_column="5", pair_column="6",
                     label_column="4", label_kind="score")
    assert len(sts.rows) == 1500 and sts.rows[0].label == 5.0  # no header; 9-column rows still parse
    conll = read_conll(data_dir / "conll2003" / "valid.txt")
    assert len(conll.rows) == 3250 and sum(len(s.words) for s in conll.rows) == 51362
