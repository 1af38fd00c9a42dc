"""The index: build from each format, query modes, best chunk, filters, add/update/delete, stale-model refusal,
rebuild, index kinds and int8, and errors that name the bad value."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from robertaops.errors import DocumentNotFoundError, IndexNotFoundError, InvalidInputError, StaleIndexError
from robertaops.search import writer
from robertaops.search.index import Index
from robertaops.search.sources import Doc, read_docs

N_DOCS = 5  # conftest.DOCS


def ids(hits):
    return [h["id"] for h in hits]


def test_build_records_model_and_counts(built, short_model):
    ix = Index.open(built)
    info = ix.info()
    assert info["counts"]["documents"] == N_DOCS
    assert info["counts"]["chunks"] > N_DOCS  # the long document is several chunks
    assert info["vectors"] == info["counts"]["chunks"]
    assert info["model"]["weights_sha256"] == short_model.weights_sha256
    assert len(info["model"]["tokenizer_sha256"]) == 64
    assert info["index"]["kind"] == "flat"


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_modes_find_the_obvious_document(built, short_model, mode):
    hits = Index.open(built).search("What is the capital of France?", mode=mode, k=3, model=short_model)
    assert hits[0]["id"] == "paris"
    assert hits[0]["metadata"] == {"lang": "fr", "year": 2021}
    assert all(hits[i]["score"] >= hits[i + 1]["score"] for i in range(len(hits) - 1))


def test_dense_scores_are_cosines_of_the_best_chunk(built, short_model, docs):
    from robertaops.pipelines.embed import embed_windows

    ix = Index.open(built)
    query = "lava and magma from a volcano"
    hit = next(h for h in ix.search(query, k=5, model=short_model) if h["id"] == "long")
    assert "magma" in hit["chunk"]["text"] and "lava" in hit["chunk"]["text"]
    assert len(hit["chunk"]["text"]) < len(hit["text"]) / 2  # a part of the document, not all of it
    assert f"{hit['title']} {hit['text']}"[hit["chunk"]["start"]:hit["chunk"]["end"]] == hit["chunk"]["text"]
    doc = next(d for d in docs if d["_id"] == "long")
    chunks, _, _ = embed_windows(short_model.runner, [f"{doc['title']} {doc['text']}"], pooling="mean",
                                 normalize=True)
    q = short_model.embed(query)
    assert hit["score"] == pytest.approx(float((chunks @ q).max()), abs=1e-5)
    assert ix.search(query, k=1, model=short_model)[0]["id"] == "long"


def test_query_vector_equals_query_text(built, short_model):
    ix = Index.open(built)
    by_text = ix.search("dogs and wolves", k=5, model=short_model)
    by_vector = ix.search("dogs and wolves", k=5, vector=short_model.embed("dogs and wolves"))
    assert ids(by_text) == ids(by_vector)


def test_index_loads_its_own_model(built):
    assert Index.open(built).search("capital of France", k=1)[0]["id"] == "paris"


def test_filters(built, short_model):
    ix = Index.open(built)
    for mode in ("dense", "lexical", "hybrid"):
        hits = ix.search("domesticated animals", mode=mode, k=10, model=short_model, where={"lang": "en"})
        assert hits and all(h["metadata"]["lang"] == "en" for h in hits)
        years = ix.search("animals", mode=mode, k=10, model=short_model, where={"year": [2020, 2022]})
        assert {h["metadata"]["year"] for h in years} <= {2020, 2022}
    assert ix.search("anything", k=5, model=short_model, where={"lang": "de"}) == []
    with pytest.raises(InvalidInputError, match="filter key"):
        ix.search("x", k=5, model=short_model, where={"a'); DROP TABLE docs; --": 1})


def test_hybrid_fusions(built, short_model):
    ix = Index.open(built)
    for kw in ({"fusion": "rrf", "rrf_k": 10}, {"fusion": "weighted", "alpha": 0.3}):
        assert ix.search("Eiffel tower", mode="hybrid", k=2, model=short_model, **kw)[0]["id"] == "paris"
    with pytest.raises(InvalidInputError, match="fusion"):
        ix.search("x", mode="hybrid", fusion="max", model=short_model)
    with pytest.raises(InvalidInputError, match="mode"):
        ix.search("x", mode="semantic")


def test_add_update_delete_without_rebuild(index_copy, short_model):
    before = Index.open(index_copy)
    n_chunks = before.info()["counts"]["chunks"]
    new = [Doc("rome", "Rome is the capital of Italy, with the Colosseum.", "Rome", {"lang": "it"}),
           Doc("cats", "Cats now means: a famous stage musical by Andrew Lloyd Webber.", "Cats", {"lang": "en"})]
    assert writer.add(index_copy, [new], short_model)["added"] == 1
    after = Index.open(index_copy)
    assert after.info()["counts"]["documents"] == N_DOCS + 1
    assert after.search("capital of Italy", k=1, model=short_model)[0]["id"] == "rome"
    cats = after.search("a stage musical", k=1, model=short_model)[0]
    assert cats["id"] == "cats" and "musical" in cats["text"]
    # the unchanged documents kept their vectors: same chunk count plus the new ones
    assert after.info()["counts"]["chunks"] == n_chunks + 1
    assert before.search("Eiffel", mode="lexical", k=1)[0]["id"] == "paris"  # the old generation still reads
    writer.delete(index_copy, ["paris"])
    gone = Index.open(index_copy)
    assert "paris" not in ids(gone.search("capital of France", k=10, model=short_model))
    assert "paris" not in ids(gone.search("Eiffel tower", mode="lexical", k=10))
    with pytest.raises(DocumentNotFoundError, match="'nope'"):
        writer.delete(index_copy, ["nope"])
    assert writer.delete(index_copy, ["nope"], missing_ok=True)["deleted"] == 0


def test_other_model_is_refused_and_rebuild_re_embeds(index_copy, tiny_model, short_model):
    ix = Index.open(index_copy)
    with pytest.raises(StaleIndexError, match="stale") as err:
        ix.search("x", model=tiny_model)
    assert "rebuild" in str(err.value) and "weights_sha256" in str(err.value)
    with pytest.raises(StaleIndexError):
        writer.add(index_copy, [[Doc("x", "y")]], tiny_model)
    writer.rebuild(index_copy, tiny_model, None)
    rebuilt = Index.open(index_copy)
    assert rebuilt.manifest["model"]["weights_sha256"] == tiny_model.weights_sha256
    assert rebuilt.info()["counts"]["documents"] == N_DOCS
    assert len(rebuilt.search("cats", k=3, model=tiny_model)) == 3
    with pytest.raises(StaleIndexError):
        rebuilt.search("x", model=short_model)


@pytest.mark.parametrize("kind,int8", [("hnsw", False), ("ivf", False), ("flat", True), ("hnsw", True), ("pq", False),
                                       ("pq", True)])
def test_index_kinds(tmp_path, corpus, tiny_model, kind, int8):
    path = tmp_path / "ix"
    writer.build(path, read_docs(corpus), tiny_model, None, kind=kind, int8=int8, progress=False)
    ix = Index.open(path)
    assert ix.info()["index"]["kind"] == kind
    stored = np.load(ix.gen / "embeddings.npy")
    assert stored.dtype == (np.int8 if int8 else np.float32)
    q = tiny_model.embed("Dogs are loyal companions")
    assert ix.search("", vector=q, k=1)[0]["id"] == "dogs"
    writer.delete(path, ["dogs"])  # HNSW and pq cannot remove: rebuilt from stored embeddings
    assert "dogs" not in ids(Index.open(path).search("", vector=q, k=10))


@pytest.mark.parametrize("kind", ["hnsw", "pq"])
def test_large_filters_hold_for_every_kind(tmp_path, corpus, tiny_model, kind, monkeypatch):
    """Above EXACT_FILTER_MAX allowed chunks the filter goes to FAISS, whose fast-scan codes (pq) would ignore it."""
    from robertaops.search import index as index_module

    monkeypatch.setattr(index_module, "EXACT_FILTER_MAX", 0)
    writer.build(tmp_path / "ix", read_docs(corpus), tiny_model, None, kind=kind, progress=False)
    ix = Index.open(tmp_path / "ix")
    hits = ix.search("", vector=tiny_model.embed("Dogs are loyal companions"), k=10, where={"lang": "fr"})
    assert hits and all(h["metadata"]["lang"] == "fr" for h in hits)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_tables_with_chosen_columns(tmp_path, tiny_model, fmt):
    import pandas as pd

    frame = pd.DataFrame({"doc": ["a", "b"], "body": ["first text", "second text"], "lang": ["en", "fr"]})
    path = tmp_path / f"docs.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    writer.build(tmp_path / "ix", read_docs(path, id_column="doc", text_column="body"), tiny_model, None,
                 progress=False)
    hits = Index.open(tmp_path / "ix").search("x", vector=tiny_model.embed("second text"), k=1,
                                              where={"lang": "fr"})
    assert hits[0]["id"] == "b" and hits[0]["text"] == "second text"


def test_bad_inputs(tmp_path, tiny_model):
    with pytest.raises(IndexNotFoundError, match="no search index"):
        Index.open(tmp_path / "missing")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "1", "text": "ok"}\nnot json\n')
    with pytest.raises(InvalidInputError, match="line 2"):
        writer.build(tmp_path / "ix", read_docs(bad), tiny_model, None, progress=False)
    assert not (tmp_path / "ix" / "CURRENT").exists()
    cols = tmp_path / "c.csv"
    cols.write_text("id,body\n1,hello\n")
    with pytest.raises(InvalidInputError, match="no text column 'text'"):
        list(read_docs(cols))
    with pytest.raises(InvalidInputError, match="suffix"):
        list(read_docs(shutil.copy(cols, tmp_path / "c.xlsx")))


def test_manifest_is_json_with_versions(built):
    manifest = json.loads((Index.open(built).gen / "manifest.json").read_text())
    assert {"format", "robertaops", "model", "index", "counts"} <= manifest.keys()
