"""Scores of label-set predictions: probabilities, decision thresholds, metrics and a model card's rows.

Thresholds are chosen on the validation split, never on test (:func:`choose_thresholds`): one global
threshold that maximises validation micro-F1, then, for each label with at least
:data:`MIN_LABEL_POSITIVES` validation positives, its own threshold maximising that label's F1; the
others keep the global one (a threshold fitted on a handful of positives only memorises them).

Metrics are scikit-learn's (:func:`compute_metrics`): micro/macro/samples F1, subset accuracy (exact
match of the whole set: scikit-learn's ``accuracy_score`` on indicator matrices), Hamming loss,
per-label precision/recall/F1/support, label cardinality, percentile bootstrap intervals over rows.
May import: ``tasks.registry`` and ``tasks.label_sets``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

from .label_sets import as_indicator

MIN_LABEL_POSITIVES = 10  # validation positives a label needs for its own threshold
THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)  # candidates, strictly inside (0, 1)
CONFIDENCE = 0.95
N_BOOT = 1000
KIND = "multi_label"


class ThresholdError(ValueError):
    """A decision threshold outside (0, 1)."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Per-label probabilities (numerically stable for large |logit|)."""
    logits = np.asarray(logits, dtype=np.float64)
    return np.where(logits >= 0, 1 / (1 + np.exp(-np.abs(logits))), np.exp(-np.abs(logits)) / (1 + np.exp(-np.abs(logits))))


def check_threshold(value: float, what: str = "threshold") -> float:
    """A decision threshold must lie strictly inside (0, 1): at 0 every label is predicted, at 1 none."""
    value = float(value)
    if not 0.0 < value < 1.0 or not np.isfinite(value):
        raise ThresholdError(f"{what} {value:g} is outside (0, 1); give a probability such as 0.5 "
                             f"(a label is predicted when its sigmoid probability reaches it).")
    return value


def apply_thresholds(probs: np.ndarray, thresholds: float | Sequence[float]) -> np.ndarray:
    """0/1 predictions: label k is predicted when its probability is at least its threshold."""
    values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    for v in values:
        check_threshold(v)
    return (np.asarray(probs) >= values).astype(np.int64)


def _f1_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _best(scores: np.ndarray) -> float:
    """The grid threshold of the highest score; ties go to the one nearest 0.5 (the untuned default)."""
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(THRESHOLD_GRID[best[np.argmin(np.abs(THRESHOLD_GRID[best] - 0.5))]])


def choose_thresholds(probs: np.ndarray, truth: np.ndarray, min_positives: int = MIN_LABEL_POSITIVES,
                      ) -> dict[str, Any]:
    """Thresholds from validation probabilities and indicator truth (see the module docstring for the rule).

    Returns ``global`` (micro-F1-optimal), ``per_label`` (one per label, the global one where the label
    has fewer than ``min_positives`` validation positives), ``tuned`` (which labels got their own),
    the rule in words and the validation micro-F1 at the global threshold.
    """
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth) > 0
    pred = probs[None, :, :] >= THRESHOLD_GRID[:, None, None]  # (grid, rows, labels)
    tp = (pred & truth).sum(axis=1)
    fp = (pred & ~truth).sum(axis=1)
    fn = (~pred & truth).sum(axis=1)
    micro = _f1_counts(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1))
    global_t = _best(micro)
    per_label_f1 = _f1_counts(tp, fp, fn)  # (grid, labels)
    positives = truth.sum(axis=0)
    tuned = [bool(n >= min_positives) for n in positives]
    per_label = [_best(per_label_f1[:, k]) if tuned[k] else global_t for k in range(truth.shape[1])]
    return {"global": global_t, "per_label": per_label, "tuned": tuned, "min_positives": int(min_positives),
            "validation_micro_f1": float(micro.max()), "validation_positives": [int(n) for n in positives],
            "rule": (f"global threshold maximising validation micro-F1 (grid {THRESHOLD_GRID[0]:g}..{THRESHOLD_GRID[-1]:g} "
                     f"step 0.01); a label with at least {min_positives} validation positives gets its own threshold "
                     f"maximising its validation F1, the others keep the global one")}


def best_micro_f1(logits: np.ndarray, truth: np.ndarray) -> float:
    """Validation micro-F1 at the best global threshold: the model-selection score during training."""
    return choose_thresholds(sigmoid(logits), truth, min_positives=len(truth) + 1)["validation_micro_f1"]


def _scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The headline scores of one prediction matrix (scikit-learn's definitions)."""
    out: dict[str, float] = {}
    for average in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average=average, zero_division=0)
        out |= {f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)}
    out["samples_f1"] = float(f1_score(truth, pred, average="samples", zero_division=1.0))
    out["subset_accuracy"] = float(accuracy_score(truth, pred))
    out["hamming_loss"] = float(hamming_loss(truth, pred))
    return out


def cooccurrence(indicator: np.ndarray) -> list[list[int]]:
    """``C[i][j]``: rows holding both label i and label j (the diagonal: rows holding label i)."""
    x = np.asarray(indicator, dtype=np.int64)
    return (x.T @ x).tolist()


def compute_metrics(truth: Any, probs: np.ndarray, thresholds: Mapping[str, Any] | float, *,
                    names: Sequence[str], seed: int = 0, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Every reported multi-label metric for probabilities cut at the chosen thresholds.

    ``thresholds``: a :func:`choose_thresholds` record (its ``per_label`` values are used) or one number.
    ``accuracy`` is subset accuracy (scikit-learn's ``accuracy_score`` on label sets), so tables that
    read ``accuracy`` show the strictest multi-label score, never a per-label average.
    """
    names = list(names)
    truth = as_indicator(truth, len(names)).astype(np.int64)
    record = dict(thresholds) if isinstance(thresholds, Mapping) else {"global": check_threshold(thresholds),
                                                                      "per_label": [float(thresholds)] * len(names)}
    pred = apply_thresholds(probs, record["per_label"])
    p, r, f, s = precision_recall_fscore_support(truth, pred, average=None, zero_division=0)
    metrics: dict[str, Any] = {"kind": KIND, **_scores(truth, pred)}
    metrics["accuracy"] = metrics["subset_accuracy"]
    metrics |= {
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
        "label_cardinality": {"truth": float(truth.sum(axis=1).mean()), "predicted": float(pred.sum(axis=1).mean())},
        "empty_truth_share": float((truth.sum(axis=1) == 0).mean()),
        "empty_prediction_share": float((pred.sum(axis=1) == 0).mean()),
        "cooccurrence": {"truth": cooccurrence(truth), "predicted": cooccurrence(pred)},
        "thresholds": record, "labels": names, "n_eval": int(len(truth)),
        "bce": binary_cross_entropy(probs, truth),
        "at_global_threshold": _scores(truth, apply_thresholds(probs, record["global"])),
        "at_half": _scores(truth, apply_thresholds(probs, 0.5)),
        "intervals": bootstrap_intervals(truth, pred, seed=seed, n_boot=n_boot),
        "confidence": CONFIDENCE,
    }
    return metrics


def binary_cross_entropy(probs: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-label binary cross-entropy (the training loss, on the scored rows)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    t = np.asarray(truth, dtype=np.float64)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


BOOTSTRAPPED = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss")


def bootstrap_intervals(truth: np.ndarray, pred: np.ndarray, seed: int = 0, n_boot: int = N_BOOT,
                        confidence: float = CONFIDENCE) -> dict[str, list[float]]:
    """Percentile bootstrap intervals over rows of the headline scores (rows resampled with replacement)."""
    rng = np.random.default_rng(seed)
    n = len(truth)
    draws = {k: np.empty(n_boot) for k in BOOTSTRAPPED}
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        scores = _fast_scores(truth[idx], pred[idx])
        for k in BOOTSTRAPPED:
            draws[k][b] = scores[k]
    return {k: _percentile_interval(v, confidence) for k, v in draws.items()}


def _percentile_interval(draws: np.ndarray, confidence: float) -> list[float]:
    """The central ``confidence`` share of bootstrap draws: its lower and upper percentile."""
    alpha = (1 - confidence) / 2
    return [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))]


def _fast_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """:func:`_scores`' headline numbers in numpy (the bootstrap computes them a thousand times);
    tests hold them equal to scikit-learn's."""
    t, p = truth > 0, pred > 0
    tp, fp, fn = (t & p).sum(axis=0), (~t & p).sum(axis=0), (t & ~p).sum(axis=0)
    row_tp, row_fp, row_fn = (t & p).sum(axis=1), (~t & p).sum(axis=1), (t & ~p).sum(axis=1)
    row_den = 2 * row_tp + row_fp + row_fn
    samples = np.where(row_den > 0, 2 * row_tp / np.maximum(row_den, 1), 1.0)  # empty vs empty: 1 (zero_division=1)
    return {"micro_f1": float(_f1_counts(tp.sum(), fp.sum(), fn.sum())), "macro_f1": float(_f1_counts(tp, fp, fn).mean()),
            "samples_f1": float(samples.mean()), "subset_accuracy": float((t == p).all(axis=1).mean()),
            "hamming_loss": float((t != p).mean())}


def card_metrics(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The hub model-index metrics of a multi-label run (micro F1 first: the selection metric)."""
    def row(kind: str, name: str, key: str, **extra: Any) -> dict[str, Any]:
        return {"type": kind, "name": name, "value": round(float(metrics[key]), 4), **extra}

    return [row("f1", "micro F1", "micro_f1", args={"average": "micro"}),
            row("f1", "macro F1", "macro_f1", args={"average": "macro"}),
            row("accuracy", "subset accuracy (exact match)", "subset_accuracy"),
            row("hamming_loss", "Hamming loss", "hamming_loss")]


def card_rows(metrics: Mapping[str, Any]) -> str:
    """Markdown rows of a multi-label run's scores and the thresholds it predicts with."""
    t = metrics["thresholds"]
    own = sum(t.get("tuned", []))
    return "\n".join([
        "| task kind | multi-label (sigmoid per label; a label is predicted at or above its threshold) |",
        f"| test micro F1 | {metrics['micro_f1']:.4f} |", f"| macro F1 | {metrics['macro_f1']:.4f} |",
        f"| samples F1 | {metrics['samples_f1']:.4f} |",
        f"| subset accuracy (exact match) | {metrics['subset_accuracy']:.4f} |",
        f"| Hamming loss | {metrics['hamming_loss']:.4f} |",
        f"| thresholds (chosen on validation) | global {t['global']:.2f}; {own} label(s) with their own |"])
