"""Reference fine-tuning: transformers' `Trainer` on the same model, data subset and hyper-parameters as
`robertaops finetune classify` (benchmarks/finetune_compare.py runs both and compares).

Same as ours: rows read by robertaops' reader and the same seeded --max-train subset (training.finetune.subset),
truncation at --max-length, batch size, epochs, lr, linear schedule without warm-up, AdamW betas (0.9, 0.999),
eps 1e-8, weight decay 0, gradient clipping 1.0, seed. Trainer's own defaults otherwise, as users run it:
DataCollatorWithPadding (pads each random batch to its longest row), fused AdamW (transformers' default on
torch >= 2.8), fp32. Dev accuracy is computed on the full dev file after training.

Prints ONE JSON line: accuracy, train examples/s (Trainer's train_samples_per_second), seconds.
Run: .venv/bin/python benchmarks/finetune_hf.py --train ../shared/data/sst2/train.tsv --dev ../shared/data/sst2/dev.tsv
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from robertaops.resolve import resolve
from robertaops.training.data import label_list, read_table
from robertaops.training.finetune import subset


class Rows(torch.utils.data.Dataset):
    def __init__(self, enc: dict, labels: list[int]):
        self.enc, self.labels = enc, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--text-column", default="sentence")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    path = resolve(a.model)
    train = subset(read_table(a.train, text_column=a.text_column, label_column=a.label_column).rows, a.max_train,
                   a.seed)
    dev = read_table(a.dev, text_column=a.text_column, label_column=a.label_column).rows
    labels = label_list([r.label for r in train + dev], "class")
    label2id = {x: i for i, x in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id)

    def dataset(rows):
        enc = tok([r.text for r in rows], truncation=True, max_length=a.max_length)
        return Rows(dict(enc), [label2id[r.label] for r in rows])

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64,
            learning_rate=a.lr, num_train_epochs=a.epochs, weight_decay=0.0, warmup_steps=0,
            lr_scheduler_type="linear", max_grad_norm=1.0, seed=a.seed, save_strategy="no", eval_strategy="no",
            report_to=[], logging_steps=50, use_cpu=True, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset(train),
                          data_collator=DataCollatorWithPadding(tok))
        t0, c0 = time.perf_counter(), time.process_time()
        stats = trainer.train().metrics
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        pred = trainer.predict(dataset(dev))
    accuracy = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    print(json.dumps({"side": "transformers Trainer", "accuracy": accuracy,
                      "train_examples_per_second": round(len(train) * a.epochs / seconds, 2),
                      "train_examples_per_cpu_second": round(len(train) * a.epochs / cpu, 2),
                      "trainer_train_samples_per_second": stats.get("train_samples_per_second"),
                      "train_seconds": round(seconds, 2), "train_rows": len(train), "dev_rows": len(dev),
                      "torch_threads": torch.get_num_threads()}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
