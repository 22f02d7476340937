"""Predictions and metrics: accuracy, macro and per-class P/R/F1, confusion matrix, calibration.

Metrics come from scikit-learn so they match what reviewers compute; the confusion matrix
has rows = true label, columns = predicted label (scikit-learn's convention).
"""

from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .tokens import PadCollator, TokenizedDataset


def autocast_context(device: torch.device, precision: str) -> Any:
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def pad_multiple(requested: int, device: torch.device) -> int:
    """The batch width's multiple: ``requested``, or for 0 the device's choice (8 on CUDA, 1 elsewhere)."""
    if requested > 0:
        return requested
    return 8 if device.type == "cuda" else 1


@torch.inference_mode()
def predict_logits(model: nn.Module, dataset: TokenizedDataset, pad_token_id: int, batch_size: int = 128,
                   device: torch.device | None = None, precision: str = "fp32", progress: bool = False,
                   multiple: int = 0) -> np.ndarray:
    """Logits for every example, in dataset order.

    Examples are batched in length order (least padding), then put back in place: the
    test set is scored in one pass with the fewest padded tokens. ``multiple``: see :func:`pad_multiple`.
    """
    device = device or next(model.parameters()).device
    model.eval()
    order = np.argsort(np.asarray(dataset.lengths), kind="stable")
    collate = PadCollator(pad_token_id, multiple=pad_multiple(multiple, device))
    width = getattr(getattr(model, "config", None), "num_labels", None)
    out = np.zeros((len(dataset), int(width or 0)), dtype=np.float32)
    starts = range(0, len(order), batch_size)
    if progress:
        from .paths import bar

        starts = bar(starts, desc="evaluate", unit="batch")
    for start in starts:
        idx = order[start:start + batch_size]
        batch = collate([dataset[int(i)] for i in idx])
        with autocast_context(device, precision):
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
        if out.shape[1] != logits.shape[-1]:  # a model without a config: the width its head produces
            out = np.zeros((len(dataset), logits.shape[-1]), dtype=np.float32)
        out[idx] = logits.float().cpu().numpy()
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: Sequence[int], n_bins: int = 15) -> dict[str, Any]:
    """ECE with equal-width confidence bins, and the per-bin table for a reliability diagram."""
    labels = np.asarray(labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = []
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        n = int(mask.sum())
        if n:
            acc, avg = float(correct[mask].mean()), float(conf[mask].mean())
            ece += n / len(labels) * abs(acc - avg)
        else:
            acc = avg = None
        bins.append({"lower": float(lo), "upper": float(hi), "count": n, "accuracy": acc, "confidence": avg})
    return {"ece": float(ece), "n_bins": n_bins, "bins": bins}


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], probs: np.ndarray | None = None, *,
                    names: Sequence[str]) -> dict[str, Any]:
    """All reported metrics for one set of predictions (scikit-learn definitions), per class of ``names``."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    names = list(names)
    labels = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(mp), "macro_recall": float(mr), "macro_f1": float(mf),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(names)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "labels": names,
        "n_eval": int(len(y_true)),
    }
    if probs is not None:
        cal = expected_calibration_error(probs, y_true)
        metrics["ece"] = cal["ece"]
        metrics["calibration"] = cal
        metrics["nll"] = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None))))
    return metrics


def evaluate_model(model: nn.Module, dataset: TokenizedDataset, pad_token_id: int, batch_size: int,
                   device: torch.device, precision: str, progress: bool = False,
                   multiple: int = 0, *, names: Sequence[str]) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics and logits of ``model`` on ``dataset``, whose label ids index the task's class ``names``.

    A transformers model carries its own label names (``config.id2label``); scoring it on another
    task's rows is refused, naming both, instead of reporting metrics under the wrong class names.
    """
    from .tasks.registry import check_same_labels, model_labels

    if hasattr(getattr(model, "config", None), "num_labels"):
        check_same_labels(names, model_labels(model), "the data", "the model")
    logits = predict_logits(model, dataset, pad_token_id, batch_size, device, precision, progress, multiple)
    metrics = compute_metrics(dataset.labels, logits.argmax(axis=1), softmax(logits), names=names)
    return metrics, logits


def most_confident_mistakes(texts: Sequence[str], labels: Sequence[int], probs: np.ndarray, names: Sequence[str],
                            k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` wrong predictions made with the highest confidence, with true and predicted class names."""
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    return [{"text": texts[i], "true": names[labels[i]], "predicted": names[pred[i]],
             "confidence": float(probs[i, pred[i]])} for i in wrong]
