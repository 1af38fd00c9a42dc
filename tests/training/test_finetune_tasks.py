"""NER label alignment (first / all sub-words) and end-to-end NER and embedding fine-tuning on tiny models."""

from __future__ import annotations

import json

import pytest
from finetune_helpers import quick

import robertaops as ro
from robertaops.training.data import Sentence
from robertaops.training.evaluate import evaluate
from robertaops.training.finetune import FinetuneArgs, finetune
from robertaops.training.model_io import load_tokenizer
from robertaops.training.tasks import IGNORE, encode_sentences

LABELS = {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_ner_alignment(make_checkpoint, family):
    directory, _ = make_checkpoint(family, "base")
    from robertaops.model.config import EncoderConfig

    tok = load_tokenizer(directory, EncoderConfig.from_file(directory / "config.json"))
    s = Sentence(["Johannesburgers", "met", "Kowalczykowski"], ["B-LOC", "O", "B-PER"], 1)
    text = " ".join(s.words)
    enc = tok.encode([text])[0]
    pieces = [(tok.id_to_token(i), text[a:b]) for i, (a, b) in zip(enc.ids, enc.offsets, strict=True)]
    first = encode_sentences(tok, [s], 64, LABELS, "first")
    every = encode_sentences(tok, [s], 64, LABELS, "all")
    assert first.ids[0] == enc.ids
    # positions of each word's pieces, from the offsets
    word_of = []
    for (a, _b), special in zip(enc.offsets, enc.special_tokens_mask, strict=True):
        word_of.append(None if special else text[:a].count(" "))
    n_pieces = [word_of.count(w) for w in range(3)]
    assert n_pieces[0] > 1 and n_pieces[2] > 1, pieces  # the test needs words split into several pieces
    for t, w in enumerate(word_of):
        if w is None:
            assert first.targets[0][t] == IGNORE and every.targets[0][t] == IGNORE
        elif t == first.words[0][w]:  # first piece of word w: its tag, both strategies
            assert first.targets[0][t] == every.targets[0][t] == LABELS[s.tags[w]]
        else:  # later pieces: ignored, or the I- form of the word's tag
            assert first.targets[0][t] == IGNORE
            assert every.targets[0][t] == LABELS[s.tags[w].replace("B-", "I-")]


def _conll(path, sentences):
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in sentences:
        lines += [f"{w} NN O {t}" for w, t in zip(words, tags, strict=True)] + [""]
    path.write_text("\n".join(lines))
    return path


NAMES, PLACES = ["Anna", "Boris", "Carla", "Dmitri"], ["Paris", "Oslo", "Lima", "Quito"]


def _ner_rows():
    rows = []
    for n in NAMES:
        for p in PLACES:
            rows.append(([n, "visited", p, "today"], ["B-PER", "O", "B-LOC", "O"]))
            rows.append((["In", p, "we", "met", n, "Smith"], ["O", "B-LOC", "O", "O", "B-PER", "I-PER"]))
    return rows


@pytest.mark.parametrize("strategy", ["first", "all"])
def test_ner_end_to_end(tmp_path, tiny_roberta, strategy):
    data = _conll(tmp_path / "train.txt", _ner_rows())
    out = tmp_path / f"ner-{strategy}"
    result = finetune(FinetuneArgs(task="ner", train=data, dev=data, output=out, model=str(tiny_roberta),
                                   ner_labels=strategy, tracking_uri="none", progress=False,
                                   train_cfg=quick(epochs=10)))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["RobertaForTokenClassification"]
    assert set(cfg["label2id"]) == {"O", "B-PER", "I-PER", "B-LOC"}
    assert result["metrics"]["f1"] > 0.9
    # the served pipeline gives the same entity F1 as the training loop's own dev evaluation
    again = evaluate(str(out), "ner", data)
    assert again["metrics"]["f1"] == pytest.approx(result["metrics"]["f1"])
    entities = ro.load(out).ner("Boris visited Lima today", aggregation="first")  # word-level, as trained
    assert {(e["entity_group"], e["word"].strip()) for e in entities} >= {("PER", "Boris"), ("LOC", "Lima")}


def test_embedding_end_to_end(tmp_path, default_model_dir):
    pairs = [("A man is playing a guitar.", "A man plays the guitar.", 4.8),
             ("A woman is slicing an onion.", "Someone is cutting an onion.", 4.2),
             ("A dog runs in the park.", "A cat sleeps on the sofa.", 0.4),
             ("Kids are swimming.", "Children swim in a pool.", 4.0),
             ("The market fell sharply.", "A man is playing a guitar.", 0.0),
             ("A plane is taking off.", "An airplane departs.", 4.6)] * 2
    train = tmp_path / "pairs.tsv"
    train.write_text("sentence1\tsentence2\tscore\n" + "\n".join(f"{a}\t{b}\t{s}" for a, b, s in pairs) + "\n")
    out = tmp_path / "emb"
    result = finetune(FinetuneArgs(task="embedding", train=train, dev=train, output=out,
                                   model=str(default_model_dir), pair_column="sentence2", text_column="sentence1",
                                   label_column="score", min_score=3.0, tracking_uri="none", progress=False,
                                   train_cfg=quick(epochs=1, lr=1e-5, batch_size=4)))
    assert result["train_rows"] == 8  # pairs below --min-score dropped
    assert -1 <= result["before"]["spearman"] <= 1 and -1 <= result["metrics"]["spearman"] <= 1
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        assert (out / name).exists(), name
    again = evaluate(str(out), "embedding", train, text_column="sentence1", pair_column="sentence2",
                     label_column="score")
    assert again["metrics"]["spearman"] == pytest.approx(result["metrics"]["spearman"], abs=1e-6)
    assert ro.load(out).pooling == "mean"


def test_cli_finetune_ner_defaults(tmp_path, tiny_roberta):
    from typer.testing import CliRunner

    from robertaops import cli

    data = _conll(tmp_path / "train.txt", _ner_rows()[:8])
    out = tmp_path / "ner-cli"
    r = CliRunner().invoke(cli.app, ["finetune", "ner", "--model", str(tiny_roberta), "--train", str(data), "--dev",
                                     str(data), "--epochs", "1", "--output", str(out), "--tracking-uri", "none"])
    assert r.exit_code == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["task"] == "ner" and set(last["metrics"]) == {"precision", "recall", "f1"}
    r = CliRunner().invoke(cli.app, ["evaluate", "--model", str(out), "--task", "ner", "--data", str(data)])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["metrics"]["f1"] == pytest.approx(last["metrics"]["f1"])


def test_ner_loss_weighs_every_token_alike_across_batches(make_checkpoint):
    """With token_norm, a token's weight no longer depends on how many labelled tokens share its batch."""
    import torch

    from robertaops.model.config import EncoderConfig
    from robertaops.training.model_io import init_model
    from robertaops.training.tasks import labelled_per_batch, loss

    directory, _ = make_checkpoint("roberta", "base")
    tok = load_tokenizer(directory, EncoderConfig.from_file(directory / "config.json"))
    rows = [Sentence(["Anna"], ["B-PER"], 1), Sentence(["Bob", "met", "Carl", "in", "Rome"],
                                                          ["B-PER", "O", "B-PER", "O", "B-LOC"], 2)]
    data = encode_sentences(tok, rows, 64, LABELS, "first")
    assert labelled_per_batch(data, 2) == (1 + 5) / 2 * 2  # six labelled words over two rows, batches of two
    torch.manual_seed(0)
    model = init_model(directory, "token_classification", tuple(LABELS)).eval()
    per_batch = loss(model, data, [0, 1], "ner", "", "mean")  # the mean over this batch's six labelled tokens
    constant = loss(model, data, [0, 1], "ner", "", "mean", token_norm=3.0)
    torch.testing.assert_close(constant, per_batch * 6 / 3.0)
    short_alone = loss(model, data, [0], "ner", "", "mean", token_norm=3.0)  # one token: a third of the weight
    torch.testing.assert_close(short_alone, loss(model, data, [0], "ner", "", "mean") / 3.0)


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_packed_rows_give_each_sentence_its_own_hidden_states(make_checkpoint, family):
    """Sentences packed into one row (block-diagonal attention, positions restarting per sentence) get what each
    gets alone; both position schemes (RoBERTa's offset past the pad id, BERT's from 0)."""
    import torch

    from robertaops.training.model_io import init_model

    directory, _ = make_checkpoint(family, "base")
    model = init_model(directory, "token_classification", tuple(LABELS)).eval()
    seqs = [[5, 20, 21, 6], [5, 30, 31, 32, 33, 6], [5, 40, 6]]
    ids = torch.tensor([[*seqs[0], *seqs[1], 1, 1], [*seqs[2], *([1] * 9)]])
    segments = torch.tensor([[1] * 4 + [2] * 6 + [0, 0], [1] * 3 + [0] * 9])
    with torch.no_grad():
        packed = model(ids, segment_ids=segments)
        for s, (row, at) in zip(seqs, [(0, 0), (0, 4), (1, 0)], strict=True):
            torch.testing.assert_close(packed[row, at: at + len(s)], model(torch.tensor([s]))[0],
                                       atol=1e-5, rtol=1e-5)


def test_packed_ner_loss_equals_the_padded_one(make_checkpoint):
    import torch

    from robertaops.model.config import EncoderConfig
    from robertaops.training.model_io import init_model
    from robertaops.training.tasks import loss, pack, packed_ner_batch

    groups = pack([5, 9, 3, 4, 8], 12)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert all(sum([5, 9, 3, 4, 8][i] for i in g) <= 12 for g in groups) and len(groups) == 3
    assert pack([20, 3], 12) == [[0], [1]]  # a row longer than the width gets a row of its own

    directory, _ = make_checkpoint("roberta", "base")
    tok = load_tokenizer(directory, EncoderConfig.from_file(directory / "config.json"))
    rows = [Sentence(["Anna"], ["B-PER"], 1), Sentence(["Bob", "met", "Carl", "in", "Rome"],
                                                          ["B-PER", "O", "B-PER", "O", "B-LOC"], 2),
            Sentence(["Rome", "is", "old"], ["B-LOC", "O", "O"], 3)]
    data = encode_sentences(tok, rows, 64, LABELS, "first")
    ids, segments, target = packed_ner_batch(data, [0, 1, 2], 1, width=16)
    assert int((segments > 0).sum()) == sum(len(x) for x in data.ids)  # every token once, no padding in between
    assert int((target != -100).sum()) == 9  # every labelled word once
    torch.manual_seed(0)
    model = init_model(directory, "token_classification", tuple(LABELS)).eval()
    for norm in (None, 4.0):
        torch.testing.assert_close(loss(model, data, [0, 1, 2], "ner", "", "mean", token_norm=norm, packed=True),
                                   loss(model, data, [0, 1, 2], "ner", "", "mean", token_norm=norm))
