"""Knowledge distillation: a teacher's logits file, and reading it back for the LoRA student.

The file maps training texts to teacher logits (``texts`` + ``logits`` + ``labels`` in one .npz), so the student
can be trained on any split or subsample of the same data: rows are matched by the normalised text, not by
position, and a missing text is an error rather than a silent zero. Any fine-tuned classifier over the task's
classes can be the teacher: a lora-agnews adapter directory, or a Hugging Face sequence-classification model
directory. :func:`loss` mixes them into the student's loss (the Trainer's, :mod:`lora_agnews.core.trainer`).
May import ``paths``, ``tasks``, ``config``, ``dataset``, ``tokens``, ``evaluate`` and ``adapter``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .adapter import CONFIG_FILE, load_adapter
from .config import Config
from .dataset import Splits, load_task
from .evaluate import predict_logits
from .paths import _atomic_write_bytes
from .tasks.registry import check_same_labels, model_labels
from .tokens import TokenizedDataset, tokenize

PLAIN_MAX_LENGTH = 256  # tokens of a plain classifier's inputs (it records no training length)


class DistillError(ValueError):
    """The logits file is missing, malformed or does not cover the training texts."""


def load_teacher(teacher_dir: Path, names: Sequence[str]) -> tuple[Any, Any, int]:
    """(model, tokenizer, max_length) from an adapter directory or a plain HF classifier directory.

    The teacher must classify into the task's ``names``: an adapter of this project carries its label
    names (checked by name); a plain classifier from elsewhere often has only ``LABEL_0..`` (checked by count).
    """
    teacher_dir = Path(teacher_dir)
    if (teacher_dir / CONFIG_FILE).is_file():
        model, tokenizer, cfg = load_adapter(teacher_dir)
        check_same_labels(names, model_labels(model), "the training data", f"teacher {teacher_dir}")
        return model, tokenizer, cfg.max_length
    if not (teacher_dir / "config.json").is_file():
        raise DistillError(f"{teacher_dir} is neither a lora-agnews adapter directory nor a Hugging Face model "
                           f"directory (no config.json). Pass RUN/adapter or a saved classifier.")
    model = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir)).eval()
    if model.config.num_labels != len(names):
        raise DistillError(f"teacher {teacher_dir} has {model.config.num_labels} labels {list(model_labels(model))}; "
                           f"the training data has {len(names)} ({', '.join(names)}).")
    return model, AutoTokenizer.from_pretrained(str(teacher_dir)), PLAIN_MAX_LENGTH


def write_teacher_logits(teacher_dir: Path, texts: Sequence[str], out: Path, names: Sequence[str],
                         batch_size: int = 128) -> Path:
    """An ``.npz`` with the texts, the teacher's logits and the class names they are over."""
    model, tokenizer, max_length = load_teacher(teacher_dir, names)
    ids = tokenize(list(texts), tokenizer, max_length, cache=False)
    logits = predict_logits(model, TokenizedDataset(ids, [0] * len(ids)), tokenizer.pad_token_id, batch_size)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, texts=np.asarray(list(texts), dtype=object).astype(str), logits=logits,
                        labels=np.asarray(list(names), dtype=str))
    return _atomic_write_bytes(buffer.getvalue(), Path(out))


def teacher_logits_for(path: str | Path, texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Teacher logits aligned with ``texts`` (float32, shape ``(len(texts), len(names))``)."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"distill_logits file {path} does not exist. Write one with "
                           f"`python -m lora_agnews logits --teacher RUN/adapter --out {path}`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_texts, logits = data["texts"], data["logits"]
            stored_names = data["labels"].tolist() if "labels" in data.files else None
    except (KeyError, ValueError, OSError) as exc:
        raise DistillError(f"{path} is not a teacher logits file (needs arrays 'texts' and 'logits'): {exc}") from None
    if logits.ndim != 2 or logits.shape[1] != len(names) or len(stored_texts) != len(logits):
        raise DistillError(f"{path}: logits must have shape (n, {len(names)}) for the training data's classes "
                           f"({', '.join(names)}) and match 'texts'; got {logits.shape}.")
    if stored_names is not None:
        check_same_labels(names, stored_names, "the training data", f"teacher logits file {path}")
    index = {t: i for i, t in enumerate(stored_texts.tolist())}
    missing = [t for t in texts if t not in index]
    if missing:
        raise DistillError(f"{path} has no teacher logits for {len(missing)} of {len(texts)} training texts "
                           f"(first: {missing[0][:60]!r}). Regenerate it for this data with `python -m lora_agnews "
                           f"logits --teacher DIR --out {path} -p data ...`.")
    return logits[[index[t] for t in texts]].astype(np.float32)


def write_logits_for_data(teacher_dir: Path, cfg: Config, out: Path) -> tuple[Path, int]:
    """Teacher logits for every text of the configuration's training file (so any split or subsample is covered).

    Returns the file written and how many texts it holds.
    """
    train, _, task = load_task(cfg)
    texts = train["text"].tolist()
    return write_teacher_logits(Path(teacher_dir), texts, Path(out), task.labels), len(texts)


def teacher_extra(cfg: Config, splits: Splits) -> dict[str, np.ndarray]:
    """The training rows' teacher logits, as the extra column the Trainer's distillation loss reads."""
    return {"teacher_logits": teacher_logits_for(cfg.distill_logits, splits.train["text"].tolist(), splits.labels)}


def loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, alpha: float, temperature: float,
         label_smoothing: float) -> torch.Tensor:
    """``(1 - alpha)`` x cross-entropy on the labels + ``alpha`` x the KL divergence from the teacher's softened
    distribution (scaled by ``temperature**2``, so its gradients keep their size as the temperature grows)."""
    logits = logits.float()
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(F.log_softmax(logits / temperature, dim=-1), F.log_softmax(teacher.float() / temperature, dim=-1),
                    log_target=True, reduction="batchmean") * temperature ** 2
    return (1.0 - alpha) * hard + alpha * soft
