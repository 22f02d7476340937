"""Knowledge distillation: a teacher's logits file, and reading it back for the LoRA student.

The file maps training texts to teacher logits (``texts`` + ``logits`` in one .npz), so the
student can be trained on any split or subsample of the same data: rows are matched by the
normalised text, not by position, and a missing text is an error rather than a silent zero.
Any fine-tuned 4-way classifier can be the teacher: a lora-agnews adapter directory, or a
Hugging Face sequence-classification model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data import LABELS, TokenizedDataset, load_raw, tokenize


class DistillError(ValueError):
    """The logits file is missing, malformed or does not cover the training texts."""


def load_teacher(teacher_dir: Path) -> tuple[Any, Any, int]:
    """(model, tokenizer, max_length) from an adapter directory or a plain HF classifier directory."""
    from .adapter import CONFIG_FILE, load_adapter

    teacher_dir = Path(teacher_dir)
    if (teacher_dir / CONFIG_FILE).is_file():
        model, tokenizer, cfg = load_adapter(teacher_dir)
        return model, tokenizer, cfg.max_length
    if not (teacher_dir / "config.json").is_file():
        raise DistillError(f"{teacher_dir} is neither a lora-agnews adapter directory nor a Hugging Face model "
                           f"directory (no config.json). Pass RUN/adapter or a saved classifier.")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(teacher_dir)).eval()
    if model.config.num_labels != len(LABELS):
        raise DistillError(f"teacher {teacher_dir} has {model.config.num_labels} labels; AG News needs {len(LABELS)}.")
    return model, AutoTokenizer.from_pretrained(str(teacher_dir)), 256


def write_teacher_logits(teacher_dir: Path, texts: Sequence[str], out: Path, batch_size: int = 128) -> Path:
    from .artifacts import _atomic_write_bytes
    from .evaluate import predict_logits

    model, tokenizer, max_length = load_teacher(teacher_dir)
    ids = tokenize(list(texts), tokenizer, max_length, cache=False)
    logits = predict_logits(model, TokenizedDataset(ids, [0] * len(ids)), tokenizer.pad_token_id, batch_size)
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, texts=np.asarray(list(texts), dtype=object).astype(str), logits=logits)
    return _atomic_write_bytes(buffer.getvalue(), Path(out))


def teacher_logits_for(path: str | Path, texts: Sequence[str]) -> np.ndarray:
    """Teacher logits aligned with ``texts`` (float32, shape (len(texts), 4))."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"distill_logits file {path} does not exist. Write one with "
                           f"`python -m lora_agnews logits --teacher RUN/adapter --out {path}`.")
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_texts, logits = data["texts"], data["logits"]
    except (KeyError, ValueError, OSError) as exc:
        raise DistillError(f"{path} is not a teacher logits file (needs arrays 'texts' and 'logits'): {exc}") from None
    if logits.ndim != 2 or logits.shape[1] != len(LABELS) or len(stored_texts) != len(logits):
        raise DistillError(f"{path}: logits must have shape (n, {len(LABELS)}) matching 'texts'; got {logits.shape}.")
    index = {t: i for i, t in enumerate(stored_texts.tolist())}
    missing = [t for t in texts if t not in index]
    if missing:
        raise DistillError(f"{path} has no teacher logits for {len(missing)} of {len(texts)} training texts "
                           f"(first: {missing[0][:60]!r}). Regenerate it for this data with `python -m lora_agnews "
                           f"logits --teacher DIR --out {path} -p data ...`.")
    return logits[[index[t] for t in texts]].astype(np.float32)


def write_logits_for_data(teacher_dir: Path, data: str, out: Path) -> tuple[Path, int]:
    """Teacher logits for every text of ``data``'s training file (so any split or subsample is covered).

    Returns the file written and how many texts it holds.
    """
    texts = load_raw(data)[0]["text"].tolist()
    return write_teacher_logits(Path(teacher_dir), texts, Path(out)), len(texts)
