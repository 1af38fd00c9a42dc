"""Fine-tuning classification: it learns, the checkpoint is HF-compatible and served, temperature is stored and
applied, runs are reproducible, heads start like transformers' and any base checkpoint loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from finetune_helpers import quick, write_tsv

import robertaops as ro
from robertaops.training.evaluate import evaluate
from robertaops.training.finetune import FinetuneArgs, finetune
from robertaops.training.model_io import init_model


def test_learns_a_separable_task(trained_classifier):
    out, result = trained_classifier
    assert result["metrics"]["accuracy"] == 1.0
    assert result["metrics"]["macro_f1"] == 1.0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "pos"} and cfg["label2id"] == {"neg": 0, "pos": 1}
    assert cfg["architectures"] == ["RobertaForSequenceClassification"]
    for name in ("training_curve.png", "metrics.json", "README.md", "tokenizer.json"):
        assert (out / name).exists(), name
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_checkpoint_matches_transformers(trained_classifier):
    from transformers import AutoModelForSequenceClassification

    out, _ = trained_classifier
    texts = ["a superb plot", "a dreadful cast with a long and winding ending"]
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    m = ro.load(out)
    tok = m.tokenizer
    for text in texts:
        ids = torch.tensor([tok.ids([text])[0]])
        with torch.no_grad():
            expected = hf(ids).logits[0].numpy()
        ours = m.classify(text, top_k=None, raw_scores=True)
        got = np.array([next(r["score"] for r in ours if r["label"] == label) for label in ("neg", "pos")])
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_served_answer_equals_python_api(trained_classifier):
    import asyncio

    import httpx

    from robertaops.serving.app import create_app
    from robertaops.settings import Settings

    out, _ = trained_classifier
    text = "a lovely ending"
    expected = ro.load(out).classify(text, top_k=None)

    async def ask():
        app = create_app(Settings(models=[f"sent={out}"]))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/predict", json={"inputs": text})

    r = asyncio.run(ask())
    assert r.status_code == 200, r.text
    got = r.json()
    assert [x["label"] for x in got] == [x["label"] for x in expected]
    np.testing.assert_allclose([x["score"] for x in got], [x["score"] for x in expected], atol=1e-6)


def test_temperature_is_stored_and_applied(trained_classifier, sentiment_files):
    _, dev = sentiment_files
    out, result = trained_classifier
    t = json.loads((out / "config.json").read_text())["temperature"]
    assert t == pytest.approx(result["metrics"]["temperature"]) and t > 0 and t != 1.0
    m = ro.load(out)
    raw = m.classify("a superb plot", top_k=None, raw_scores=True)
    probs = m.classify("a superb plot", top_k=None)
    logits = np.array([r["score"] for r in sorted(raw, key=lambda r: r["label"])])
    expected = np.exp(logits / t) / np.exp(logits / t).sum()
    np.testing.assert_allclose([r["score"] for r in sorted(probs, key=lambda r: r["label"])], expected, atol=1e-6)
    # the fitted temperature minimises the dev NLL (ECE need not fall: it is not what is optimised)
    from robertaops.training.data import read_table

    rows = read_table(dev, text_column="sentence", label_column="label").rows
    scored = m.classify([r.text for r in rows], top_k=None, raw_scores=True)
    z = np.array([[next(x["score"] for x in s if x["label"] == label) for label in ("neg", "pos")] for s in scored])
    y = np.array([("neg", "pos").index(r.label) for r in rows])

    def nll(temp):
        logp = z / temp - np.log(np.exp(z / temp).sum(1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    assert nll(t) <= min(nll(1.0), nll(t * 0.8), nll(t * 1.25)) + 1e-9


def test_same_seed_same_run(tmp_path, tiny_roberta, sentiment_files):
    train, dev = sentiment_files
    runs = []
    for name in ("a", "b"):
        args = FinetuneArgs(task="classify", train=train, dev=dev, output=tmp_path / name, model=str(tiny_roberta),
                            text_column="sentence", tracking_uri="none", progress=False,
                            train_cfg=quick(epochs=1, lr=1e-3))
        runs.append(finetune(args))
    assert runs[0]["metrics"] == runs[1]["metrics"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_early_stopping_keeps_the_best(tmp_path, tiny_roberta, sentiment_files):
    train, dev = sentiment_files
    result = finetune(FinetuneArgs(task="classify", train=train, dev=dev, output=tmp_path / "es",
                                   model=str(tiny_roberta), text_column="sentence", tracking_uri="none",
                                   progress=False, calibrate=False,
                                   train_cfg=quick(epochs=40, eval_every=2, patience=2)))
    evals = json.loads((tmp_path / "es" / "metrics.json").read_text())["evals"]
    best = max(m["accuracy"] for _, m in evals)
    assert result["stopped_early"] and result["steps"] < 40 * 9
    assert result["metrics"]["accuracy"] == best
    # the saved weights are the best ones: evaluating them through the pipelines gives the best score again
    again = evaluate(str(tmp_path / "es"), "classify", dev, text_column="sentence")
    assert again["metrics"]["accuracy"] == best


@pytest.mark.parametrize("model_type,base_task", [("roberta", "mlm"), ("roberta", "base"), ("bert", "base")])
def test_fresh_head_on_any_base(make_checkpoint, model_type, base_task):
    directory, hf = make_checkpoint(model_type, base_task)
    model = init_model(directory, "sequence_classification", ("a", "b", "c"), "single_label_classification")
    ours = model.state_dict()
    hf_word = hf.base_model.embeddings.word_embeddings.weight if hasattr(hf, "base_model") else None
    assert torch.equal(ours["encoder.embeddings.word.weight"], hf_word)
    out = model.classifier.out
    assert out.weight.shape == (3, 32) and torch.count_nonzero(out.bias) == 0
    assert 0.005 < float(out.weight.detach().std()) < 0.06  # normal(0, 0.02), like transformers' _init_weights


def test_tracking_in_mlflow(tmp_path, tiny_roberta, sentiment_files):
    import mlflow

    train, dev = sentiment_files
    out = tmp_path / "runs" / "tracked"
    result = finetune(FinetuneArgs(task="classify", train=train, dev=dev, output=out, model=str(tiny_roberta),
                                   text_column="sentence", progress=False, train_cfg=quick(epochs=1, log_every=2)))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlruns.db'}")
    run = mlflow.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.003" and run.data.params["text_column"] == "sentence"
    history = mlflow.MlflowClient().get_metric_history(result["run_id"], "train_loss")
    assert len(history) >= 2 and "dev_accuracy" in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result["run_id"])}
    assert {"training_curve.png", "metrics.json", "README.md"} <= artifacts
    assert json.loads((out / "metrics.json").read_text())["run_id"] == result["run_id"]


def test_multi_label(tmp_path, tiny_roberta):
    # a row holds the labels of the adjectives it contains: one, the other, or both
    pos, neg = ("superb", "good", "lovely"), ("dreadful", "bad", "poor")
    rows = [(f"a {p} film", "pos") for p in pos] + [(f"a {n} plot", "neg") for n in neg]
    rows += [(f"a {p} and {n} cast", "pos,neg") for p in pos for n in neg]
    train = write_tsv(tmp_path / "ml.tsv", rows, header=("text", "labels"))
    result = finetune(FinetuneArgs(task="classify", train=train, dev=train, output=tmp_path / "ml",
                                   model=str(tiny_roberta), label_column="labels", multi_label=True,
                                   tracking_uri="none", progress=False, train_cfg=quick(epochs=30)))
    cfg = json.loads((tmp_path / "ml" / "config.json").read_text())
    assert cfg["problem_type"] == "multi_label_classification"
    assert sorted(cfg["label2id"]) == ["neg", "pos"]
    assert result["metrics"]["f1"] > 0.9


def test_regression(tmp_path, tiny_roberta):
    rows = [(f"a {['bad', 'fine', 'great'][i % 3]} {n}", float(i % 3)) for i, n in enumerate(["film", "plot"] * 12)]
    train = write_tsv(tmp_path / "r.tsv", rows, header=("text", "score"))
    result = finetune(FinetuneArgs(task="regression", train=train, dev=train, output=tmp_path / "reg",
                                   model=str(tiny_roberta), label_column="score", tracking_uri="none",
                                   progress=False, train_cfg=quick(epochs=15)))
    assert result["metrics"]["pearson"] > 0.9
    cfg = json.loads((tmp_path / "reg" / "config.json").read_text())
    assert cfg["problem_type"] == "regression" and len(cfg["id2label"]) == 1
