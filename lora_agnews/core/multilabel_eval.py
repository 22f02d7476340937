"""A multi-label run's scoring, ``predict`` output and export record (needs the adapter, so above it).

The pure parts (label sets, thresholds, metrics) live in :mod:`lora_agnews.core.data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .data import (PROBLEM_TYPE, SEPARATOR, apply_thresholds, check_threshold, choose_thresholds, compute_metrics,
                   sigmoid)
def score(model: Any, dataset: Any, pad_token_id: int, cfg: Any, device: Any, precision: str) -> np.ndarray:
    """Logits of ``model`` on ``dataset`` (the same batched pass as single-label scoring)."""
    from .evaluate import predict_logits
    from .paths import interactive

    return predict_logits(model, dataset, pad_token_id, cfg.eval_batch_size, device, precision,
                          progress=interactive(), multiple=cfg.pad_multiple)


def evaluate_multi_label(prep: Any, model: Any, out_dir: Any, device: Any, precision: str,
                         scoring_model: Callable[[Any, Any], Any]) -> tuple[Any, dict[str, Any], np.ndarray, float]:
    """Choose thresholds on validation, save the adapter with them, score test once with them.

    ``scoring_model``: :func:`lora_agnews.core.train.scoring_model` (passed in: train imports this module).
    Returns the adapter directory, the test metrics, the test logits and the seconds the test pass took.
    """
    import time

    from .adapter import save_adapter
    from .paths import say
    from .config import check_same_labels, model_labels

    cfg, names = prep.cfg, prep.splits.labels
    check_same_labels(names, model_labels(model), "the data", "the model")
    pad = prep.tokenizer.pad_token_id
    # validation through the unmerged model: merging rewrites the base weights, and the adapter is saved after
    val_probs = sigmoid(score(model.to(device), prep.validation, pad, cfg, device, precision))
    thresholds = choose_thresholds(val_probs, np.asarray(prep.validation.labels))
    say(f"thresholds chosen on validation: global {thresholds['global']:.2f}, "
        f"{sum(thresholds['tuned'])} of {len(names)} labels with their own")
    adapter_dir = save_adapter(model, prep.tokenizer, cfg, out_dir / "adapter", thresholds=thresholds)
    eval_model = scoring_model(model, cfg).to(device)
    say(f"scoring the test split ({len(prep.test):,} examples)")
    t0 = time.perf_counter()
    logits = score(eval_model, prep.test, pad, cfg, device, precision)
    seconds = time.perf_counter() - t0
    metrics = compute_metrics(np.asarray(prep.test.labels), sigmoid(logits), thresholds, names=names, seed=cfg.seed)
    return adapter_dir, metrics, logits, seconds


# --------------------------------------------------------------------------- predict
def thresholds_for(adapter_dir: Any, names: Sequence[str], override: float | None = None,
                   record: dict[str, Any] | None = None) -> list[float]:
    """Per-label thresholds ``predict`` applies: ``override`` for every label, else ``record`` (a merged
    task's, from the merge manifest), else the adapter's own record; without any, 0.5."""
    if override is not None:
        return [check_threshold(override, "--threshold")] * len(names)
    if record is not None:
        return list(record["per_label"])
    from .adapter import CONFIG_FILE, adapter_thresholds

    record = adapter_thresholds(adapter_dir) if (Path(adapter_dir) / CONFIG_FILE).is_file() else None
    return list(record["per_label"]) if record else [0.5] * len(names)


def prediction_rows(texts: Sequence[str], probs: np.ndarray, names: Sequence[str], thresholds: Sequence[float],
                    ) -> list[dict[str, Any]]:
    """Per text: the predicted label set (possibly empty), every label's probability and its threshold."""
    pred = apply_thresholds(probs, thresholds)
    return [{"text": text, "labels": [names[i] for i in np.flatnonzero(row)],
             "label_ids": [int(i) for i in np.flatnonzero(row)],
             "probabilities": {n: float(p) for n, p in zip(names, prob)},
             "thresholds": {n: float(t) for n, t in zip(names, thresholds)}}
            for text, row, prob in zip(texts, pred, probs)]


def print_predictions(texts: Sequence[str], probs: np.ndarray, names: Sequence[str], adapter_dir: Any,
                      override: float | None, as_json: bool, record: dict[str, Any] | None = None) -> None:
    """``predict``'s output for a multi-label adapter: JSON rows, or one tab-separated line per text
    (the label set joined by ``|``, ``-`` when empty; then every label's probability)."""
    import json

    rows = prediction_rows(texts, probs, names, thresholds_for(adapter_dir, names, override, record))
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        shown = ", ".join(f"{n}={p:.3f}" for n, p in row["probabilities"].items())
        print(f"{SEPARATOR.join(row['labels']) or '-'}\t{shown}\t{row['text']}")


# --------------------------------------------------------------------------- export
THRESHOLDS_KEY = "label_thresholds"  # in an exported config.json: label name -> threshold


def record_thresholds(config: Any, adapter_dir: Any) -> None:
    """Put a multi-label adapter's thresholds into the exported transformers config (``config.json``).

    ``problem_type`` already makes ``pipeline`` apply a sigmoid per label; the thresholds say which
    scores count as a predicted label, as ``predict`` does.
    """
    from .adapter import adapter_thresholds

    record = adapter_thresholds(adapter_dir)
    if record is None:
        return
    names = [config.id2label[i] for i in range(config.num_labels)]
    setattr(config, THRESHOLDS_KEY, {n: float(t) for n, t in zip(names, record["per_label"])})


def export_note(adapter_dir: Any) -> str:
    """The exported card's paragraph on label sets ('' for a single-label adapter)."""
    from .adapter import adapter_thresholds

    record = adapter_thresholds(adapter_dir)
    if record is None:
        return ""
    return (f"\nMulti-label: `problem_type` is `{PROBLEM_TYPE}`, so `pipeline(..., top_k=None)` returns every "
            f"label's sigmoid score; a label is predicted when its score reaches its threshold in `config.json` "
            f"(`{THRESHOLDS_KEY}`, chosen on validation: global {record['global']:.2f}). In the table above "
            f"`test accuracy` is subset accuracy (the whole label set right) and the F1 is macro F1.\n")
