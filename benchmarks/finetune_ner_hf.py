"""Reference NER fine-tuning: transformers' `Trainer` on CoNLL-2003 with the same model, sentence subset and
hyper-parameters as `robertaops finetune ner` (benchmarks/finetune_compare.py --task conll runs both).

As run_ner.py does it: words tokenized with is_split_into_words, the first sub-word of each word carries its tag
(the others -100), DataCollatorForTokenClassification, Trainer defaults otherwise (fused AdamW, fp32, linear
schedule). Test entity F1 from the first sub-word's prediction per word, exact spans (robertaops' entity_scores,
which equals seqeval's; tests/training/test_metrics.py checks it).

Prints ONE JSON line: test precision/recall/F1, train examples/s, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)

from robertaops.resolve import resolve
from robertaops.training.data import label_list, read_conll
from robertaops.training.finetune import subset
from robertaops.training.metrics import entity_scores


class Rows(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True, help="read for the label set only (no evaluation during training)")
    ap.add_argument("--test", required=True)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = resolve(a.model)
    train = subset(read_conll(a.train).rows, a.max_train, a.seed)
    dev = read_conll(a.dev).rows
    test = read_conll(a.test).rows
    labels = label_list([t for s in train + dev for t in s.tags], "tags")
    label2id = {x: i for i, x in enumerate(labels)}
    byte_level = json.loads((path / "config.json").read_text())["model_type"] != "bert"
    # RoBERTa's byte-level BPE needs add_prefix_space for pre-split words (run_ner.py does the same)
    tok = AutoTokenizer.from_pretrained(path, add_prefix_space=True) if byte_level else AutoTokenizer.from_pretrained(
        path)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)

    def encode(sentences):
        enc = tok([s.words for s in sentences], is_split_into_words=True, truncation=True, max_length=a.max_length)
        items, firsts = [], []
        for k, s in enumerate(sentences):
            words = enc.word_ids(k)
            target, first, seen = [], {}, set()
            for t, w in enumerate(words):
                if w is None or w in seen:
                    target.append(-100)
                else:
                    seen.add(w)
                    first[w] = t
                    target.append(label2id.get(s.tags[w], 0))
            items.append({"input_ids": enc["input_ids"][k], "attention_mask": enc["attention_mask"][k],
                          "labels": target})
            firsts.append(first)
        return Rows(items), firsts

    train_ds, _ = encode(train)
    test_ds, test_firsts = encode(test)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64,
            learning_rate=a.lr, num_train_epochs=a.epochs, weight_decay=0.0, warmup_steps=0,
            lr_scheduler_type="linear", max_grad_norm=1.0, seed=a.seed, save_strategy="no", eval_strategy="no",
            report_to=[], logging_steps=50, use_cpu=True, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds,
                          data_collator=DataCollatorForTokenClassification(tok))
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        pred = trainer.predict(test_ds).predictions.argmax(-1)
    tags = [[labels[int(pred[k][first[w]])] if w in first else "O" for w in range(len(s.words))]
            for k, (s, first) in enumerate(zip(test, test_firsts, strict=True))]
    scores = entity_scores([s.tags for s in test], tags)
    print(json.dumps({"side": "transformers Trainer", "metrics": scores,
                      "train_examples_per_second": round(len(train) * a.epochs / seconds, 2),
                      "train_examples_per_cpu_second": round(len(train) * a.epochs / cpu, 2),
                      "train_seconds": round(seconds, 2), "train_rows": len(train), "test_rows": len(test),
                      "torch_threads": torch.get_num_threads(), "max_prediction_width": int(np.shape(pred)[1])}))


if __name__ == "__main__":
    main()
