"""`robertaops distill`: a shallower student from a fine-tuned classifier, trained on the teacher's soft labels.

The student keeps the teacher's width, embeddings and head, and `layers` of its Transformer blocks, spread evenly
(DistilBERT's initialisation: student block j starts as teacher block `layer_map[j]`). Loss per batch:
    alpha * T^2 * KL(teacher_T || student_T)   soft labels at temperature T (logit distillation)
  + (1 - alpha) * CE(student, gold)            the hard labels
  + beta * MSE(student block j, teacher block layer_map[j])   hidden states, over real (non-pad) tokens
The best student on the dev set (the shared fine-tuning loop: early stopping, bucketed batches) is saved as an
HF-layout checkpoint next to metrics.json; the result reports teacher and student dev metrics and their deltas.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError, UnsupportedTaskError
from ..model.checkpoint import build_model
from ..model.heads import TransformerModel
from ..resolve import resolve
from . import tasks as T
from .data import check_labels, read_table
from .loop import TrainConfig, train
from .model_io import load_tokenizer, max_length_of, save_checkpoint


@dataclass
class DistillArgs:
    train: Path
    output: Path
    teacher: str | None = None
    dev: Path | None = None
    text_column: str = "text"
    pair_column: str | None = None
    label_column: str = "label"
    layers: int = 3
    temperature: float = 2.0
    alpha: float = 0.5
    beta: float = 1.0
    max_train: int | None = None
    max_length: int | None = None
    train_cfg: TrainConfig = field(default_factory=TrainConfig)


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher block for each student block, spread evenly and always ending with the teacher's last."""
    if not 1 <= student_layers <= teacher_layers:
        raise InvalidInputError(f"--layers must be between 1 and the teacher's {teacher_layers}, got {student_layers}")
    if student_layers == 1:
        return [teacher_layers - 1]
    step = (teacher_layers - 1) / (student_layers - 1)
    return [round(j * step) for j in range(student_layers)]


def make_student(teacher: TransformerModel, layers: int) -> tuple[TransformerModel, list[int]]:
    mapping = layer_map(teacher.cfg.num_hidden_layers, layers)
    student = TransformerModel(teacher.cfg.with_(num_hidden_layers=layers))
    state = {}
    for key, value in teacher.state_dict().items():
        if key.startswith("encoder.layers."):
            index, rest = key.split(".", 3)[2:]
            if int(index) in mapping:
                state[f"encoder.layers.{mapping.index(int(index))}.{rest}"] = value.clone()
        else:
            state[key] = value.clone()
    student.load_state_dict(state)
    return student, mapping


def block_outputs(model: TransformerModel, ids, mask) -> list[torch.Tensor]:
    """The hidden states after each Transformer block, (B, T, H) each (the encoder's forward, keeping them all)."""
    enc = model.encoder
    x = enc.embeddings(ids, mask)
    bias = None if bool(mask.all()) else mask.bool()[:, None, None, :]
    out = []
    for layer in enc.layers:
        x = layer(x, bias)
        out.append(x)
    return out


def distill(args: DistillArgs) -> dict:
    source = resolve(args.teacher)
    teacher = build_model(source)
    if teacher.cfg.task != "sequence_classification" or teacher.cfg.resolved_problem_type != \
            "single_label_classification":
        raise UnsupportedTaskError(f"distill needs a single-label classifier as the teacher; {source} is a "
                                   f"{teacher.cfg.task} ({teacher.cfg.resolved_problem_type}) model")
    label2id = {label: i for i, label in enumerate(teacher.cfg.id2label)}
    options = dict(text_column=args.text_column, pair_column=args.pair_column, label_column=args.label_column,
                   label_kind="class")
    rows = read_table(args.train, **options).rows
    if args.max_train:
        rows = [rows[i] for i in sorted(np.random.default_rng(args.train_cfg.seed).permutation(len(rows))
                                        [: args.max_train])]
    dev_rows = read_table(args.dev, **options).rows if args.dev else rows[: max(1, len(rows) // 10)]
    check_labels(rows, label2id, Path(args.train))
    check_labels(dev_rows, label2id, Path(args.dev or args.train))
    tokenizer = load_tokenizer(source, teacher.cfg)
    max_length = max_length_of(source, teacher.cfg, args.max_length)
    train_data = T.encode_rows(tokenizer, rows, max_length, "class", label2id)
    dev_data = T.encode_rows(tokenizer, dev_rows, max_length, "class", label2id)
    task = "pair" if args.pair_column else "classify"
    id2label = teacher.cfg.id2label

    torch.manual_seed(args.train_cfg.seed)
    student, mapping = make_student(teacher, args.layers)
    teacher.eval()
    pad_id = teacher.cfg.pad_token_id

    def loss_fn(index: list[int]) -> torch.Tensor:
        ids, mask = T.pad([train_data.ids[i] for i in index], pad_id)
        with torch.no_grad():
            t_blocks = block_outputs(teacher, ids, mask)
            t_logits = teacher.sequence_logits(t_blocks[-1]).float()
        s_blocks = block_outputs(student, ids, mask)
        s_logits = student.sequence_logits(s_blocks[-1]).float()
        tau = args.temperature
        kd = F.kl_div(F.log_softmax(s_logits / tau, -1), F.softmax(t_logits / tau, -1), reduction="batchmean")
        hard = F.cross_entropy(s_logits, torch.tensor([train_data.targets[i] for i in index]))
        real = mask.unsqueeze(-1).float()  # (B, T, 1)
        hidden = sum(((s.float() - t_blocks[m].float()) ** 2 * real).sum() / (real.sum() * s.shape[-1])
                     for s, m in zip(s_blocks, mapping, strict=True)) / len(mapping)
        return args.alpha * tau * tau * kd + (1 - args.alpha) * hard + args.beta * hidden

    def evaluate_model(model: TransformerModel) -> dict[str, float]:
        outputs = T.predict(model, dev_data, task, "mean")
        return T.score(task, "single_label_classification", dev_data, outputs, id2label)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    hist = train(student, train_data.lengths(), args.train_cfg, loss_fn=loss_fn,
                 evaluate=lambda: evaluate_model(student), primary="accuracy")
    save_checkpoint(student, source, out, temperature=teacher.cfg.hf.get("temperature"))
    teacher_metrics, student_metrics = evaluate_model(teacher), hist.best
    params = {name: sum(p.numel() for n, p in m.named_parameters() if not n.startswith("encoder.embeddings"))
              for name, m in (("teacher", teacher), ("student", student))}
    result = {
        "task": "distill", "teacher": str(source), "output": str(out), "layers": args.layers, "layer_map": mapping,
        "teacher_metrics": teacher_metrics, "student_metrics": student_metrics,
        "delta": {k: round(student_metrics[k] - v, 6) for k, v in teacher_metrics.items() if k in student_metrics},
        "non_embedding_params": params, "compute_ratio": round(params["student"] / params["teacher"], 4),
        "best_step": hist.best_step, "train_examples_per_second": round(hist.examples_per_second, 2),
        "args": {k: str(v) for k, v in asdict(args).items() if k != "train_cfg"},
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
