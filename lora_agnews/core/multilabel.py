"""Multi-label tasks: label sets, decision thresholds, metrics and paired comparison.

A multi-label task's example carries a *set* of labels (possibly empty). The model keeps the same
head (K outputs); transformers' ``problem_type="multi_label_classification"`` trains it with
binary cross-entropy on sigmoid outputs, so each output is an independent yes/no probability.

Thresholds are chosen on the validation split, never on test (:func:`choose_thresholds`): one global
threshold that maximises validation micro-F1, then, for each label with at least
:data:`MIN_LABEL_POSITIVES` validation positives, its own threshold maximising that label's F1; the
others keep the global one (a threshold fitted on a handful of positives only memorises them).

Metrics are scikit-learn's (:func:`compute_metrics`): micro/macro/samples F1, subset accuracy (exact
match of the whole set: scikit-learn's ``accuracy_score`` on indicator matrices), Hamming loss,
per-label precision/recall/F1/support, label cardinality, percentile bootstrap intervals over rows.
McNemar's test needs one right/wrong outcome per row, which a set does not have (a prediction can be
partly right), so two runs on the same rows are compared by the paired bootstrap of their micro-F1
difference (:func:`paired_comparison`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .config import DataError, TaskError, TASKS

SEPARATOR = "|"  # between the labels of one example in a ``label,text`` CSV cell
MIN_LABEL_POSITIVES = 10  # validation positives a label needs for its own threshold
THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)  # candidates, strictly inside (0, 1)
CONFIDENCE = 0.95
N_BOOT = 1000
KIND = "multi_label"
PROBLEM_TYPE = "multi_label_classification"  # transformers' name: BCEWithLogitsLoss on float targets


class ThresholdError(ValueError):
    """A decision threshold outside (0, 1)."""


# --------------------------------------------------------------------------- label sets
def parse_cell(cell: str, index: Mapping[str, int], where: str) -> tuple[int, ...]:
    """The sorted label ids of one ``a|b|c`` cell (empty cell: no label); an unknown name is refused."""
    names = [n.strip() for n in cell.split(SEPARATOR)] if cell.strip() else []
    unknown = [n for n in names if n not in index]
    if unknown:
        raise DataError(f"{where}: label {unknown[0]!r} is not in classes.txt ({', '.join(index)}). "
                        f"Fix the row, or list the label in classes.txt.")
    return tuple(sorted({index[n] for n in names}))


def is_multi_label_cells(cells: Sequence[str], classes: Sequence[str]) -> bool:
    """Whether a directory's label cells declare a multi-label task: some cell holds ``|`` that is not
    itself a class name of ``classes.txt``. Without one, the task is single-label as before (and an empty
    cell stays an error, so a forgotten label is never read as "no label")."""
    names = set(classes)
    return any(SEPARATOR in c and c not in names for c in cells)


def multi_hot(label_sets: Sequence[Sequence[int]], num_labels: int) -> np.ndarray:
    """``(rows, num_labels)`` float32 indicator matrix of label sets (the BCE target)."""
    out = np.zeros((len(label_sets), num_labels), dtype=np.float32)
    for row, ids in enumerate(label_sets):
        out[row, list(ids)] = 1.0
    return out


def label_sets(indicator: np.ndarray) -> list[tuple[int, ...]]:
    """The label ids of each row of an indicator matrix."""
    return [tuple(int(i) for i in np.flatnonzero(row)) for row in np.asarray(indicator)]


def as_indicator(labels: Any, num_labels: int) -> np.ndarray:
    """An indicator matrix from either an indicator matrix (a 2-D array) or a sequence of label-id sets."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        return labels.astype(np.float32)
    return multi_hot(list(labels), num_labels)


def split(frame: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """A seeded random split of a multi-label frame (stratification by one class does not apply to sets)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    n_val = max(1, int(round(len(frame) * fraction)))
    return frame.iloc[np.sort(order[n_val:])], frame.iloc[np.sort(order[:n_val])]


def subsample(frame: Any, n: int, seed: int) -> Any:
    """``n`` rows chosen by ``seed`` (all when ``n`` is 0 or too large), in a seeded order."""
    if n <= 0 or n >= len(frame):
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    return frame.iloc[rng.permutation(len(frame))[:n]].reset_index(drop=True)


def check_label_ids(frames: Sequence[Any], num_labels: int, task: str) -> None:
    """Refuse label ids outside 0..K-1 and a training split where no label ever occurs."""
    for frame in frames:
        for ids in frame["label"]:
            bad = [i for i in ids if not 0 <= int(i) < num_labels]
            if bad:
                raise DataError(f"label id(s) {bad} are outside 0..{num_labels - 1}, the labels of '{task}'.")
    if not any(len(ids) for ids in frames[0]["label"]):
        raise DataError(f"the training data of '{task}' has no labelled example (every label set is empty); "
                        f"a multi-label classifier needs positives of its labels.")


# --------------------------------------------------------------------------- probabilities and thresholds
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


# --------------------------------------------------------------------------- metrics
def _scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The headline scores of one prediction matrix (scikit-learn's definitions)."""
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

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
    from sklearn.metrics import precision_recall_fscore_support

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
    alpha = (1 - confidence) / 2
    return {k: [float(np.quantile(v, alpha)), float(np.quantile(v, 1 - alpha))] for k, v in draws.items()}


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


# --------------------------------------------------------------------------- paired comparison
def paired_comparison(truth: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, seed: int = 0,
                      n_boot: int = N_BOOT, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Run A against run B on the same rows: micro-F1 of each, their difference and its paired bootstrap interval.

    The same resampled rows score both runs in every draw, so what both get right or wrong cancels.
    McNemar's test is not used: it counts rows one run gets right and the other wrong, and a label set
    can be partly right; the interval of the micro-F1 difference takes its place (0 outside it: a difference).
    """
    truth, pred_a, pred_b = (np.asarray(x) > 0 for x in (truth, pred_a, pred_b))
    if not (truth.shape == pred_a.shape == pred_b.shape):
        raise TaskError(f"the runs were scored on different rows or labels (shapes {truth.shape}, {pred_a.shape}, "
                        f"{pred_b.shape}); pair runs scored on the same test rows of the same task.")
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, len(truth), size=len(truth))
        diffs[b] = _fast_scores(truth[idx], pred_a[idx])["micro_f1"] - _fast_scores(truth[idx], pred_b[idx])["micro_f1"]
    a, b_ = _fast_scores(truth, pred_a)["micro_f1"], _fast_scores(truth, pred_b)["micro_f1"]
    alpha = (1 - confidence) / 2
    interval = [float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))]
    return {"micro_f1_a": a, "micro_f1_b": b_, "difference": a - b_, "bootstrap_ci": interval,
            "confidence": confidence, "n_eval": int(len(truth)), "n_boot": int(n_boot),
            "differs": bool(interval[0] > 0 or interval[1] < 0),
            "method": "paired bootstrap of the micro-F1 difference (McNemar needs one right/wrong outcome per row; "
                      "a label set can be partly right)"}


# --------------------------------------------------------------------------- kinds
def check_same_kind(expected: bool, found: bool, expected_what: str, found_what: str) -> None:
    """Refuse a multi-label adapter used for a single-label task or the reverse, naming both sides."""
    if bool(expected) != bool(found):
        kinds = {True: "multi-label (label sets, sigmoid)", False: "single-label (one class, softmax)"}
        raise TaskError(f"{found_what} is {kinds[bool(found)]}, but {expected_what} is {kinds[bool(expected)]}; "
                        f"use an adapter trained on a task of the same kind.")


def is_multi_label_model(model: Any) -> bool:
    """Whether a (PEFT-wrapped or plain) transformers classifier was built for label sets."""
    return getattr(getattr(model, "config", None), "problem_type", None) == PROBLEM_TYPE


# --------------------------------------------------------------------------- training and scoring
def check_training_config(cfg: Any) -> None:
    """Refuse settings whose loss is single-label only, before anything is written (the Trainer's label
    smoothing and the distillation loss are cross-entropies over one class)."""
    if cfg.label_smoothing:
        raise TaskError(f"parameter 'label_smoothing' is {cfg.label_smoothing:g}, but task {cfg.task!r} is multi-label "
                        f"(BCE per label; the Trainer's smoothing is a softmax cross-entropy). Use -p label_smoothing 0.")
    if cfg.distill_logits:
        raise TaskError(f"parameter 'distill_logits' is set, but task {cfg.task!r} is multi-label (the distillation "
                        f"loss is a softmax KL divergence). Drop -p distill_logits.")


# --------------------------------------------------------------------------- model card
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



# --------------------------------------------------------------------------- a local directory
def directory_frames(directory: Any, parts: dict[str, list[tuple[str, str, int]]],
                     labels: Sequence[str] | None) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Label names (``labels`` from classes.txt, else the sorted names the cells use) and frames of label sets."""
    if labels is None:
        labels = tuple(sorted({n.strip() for rows in parts.values() for cell, _, _ in rows
                               for n in cell.split(SEPARATOR) if n.strip()}))
    import pandas as pd

    index = {name: i for i, name in enumerate(labels)}
    frames = {}
    for split, rows in parts.items():
        sets = [parse_cell(cell, index, f"{directory / f'{split}.csv'} line {line}") for cell, _, line in rows]
        frames[split] = pd.DataFrame({"text": [t for _, t, _ in rows], "label": sets}, columns=["text", "label"])
    return tuple(labels), frames




# --------------------------------------------------------------------------- the hub's multi-label datasets
def _go_emotions() -> Any:

    return TASKS["go_emotions"]


def go_emotions_frame(part: Any, names: Sequence[str], clean: Callable[[str], str]) -> Any:
    """GoEmotions rows: ``labels`` is a list of ids into the ClassLabel's ``names``, re-indexed by name."""
    import pandas as pd

    spec = _go_emotions()
    index = {n: i for i, n in enumerate(spec.labels)}
    unknown = sorted({names[int(i)] for ids in part["labels"] for i in ids} - set(index))
    if unknown:
        raise DataError(f"the hub's {spec.hub_id} has label(s) {', '.join(unknown)}, not among the 28 of the "
                        f"simplified configuration: the dataset changed; use a label,text directory instead.")
    sets = [tuple(sorted({index[names[int(i)]] for i in ids})) for ids in part["labels"]]
    return pd.DataFrame({"text": [clean(t) for t in part["text"]], "label": sets})


def reuters_labels(train: Any, test: Any) -> tuple[str, ...]:
    """ModApte's usual label set: the topics with at least one document in train and one in test."""
    seen = [{t for topics in frame["topics"] for t in topics} for frame in (train, test)]
    return tuple(sorted(seen[0] & seen[1]))


def reuters_frame(part: Any, labels: Sequence[str], clean: Callable[[str], str]) -> Any:
    """Reuters rows: title and body joined by one space; topics outside ``labels`` dropped from the set;
    a document without text dropped."""
    import pandas as pd

    index = {n: i for i, n in enumerate(labels)}
    titles = part["title"] if "title" in part.columns else [""] * len(part)
    texts = [clean(f"{title} {body}") for title, body in zip(titles, part["text"])]
    sets = [tuple(sorted({index[t] for t in topics if t in index})) for topics in part["topics"]]
    keep = [bool(t) for t in texts]
    return pd.DataFrame({"text": texts, "label": sets})[keep].reset_index(drop=True)


def hub_frames(task_name: str, dataset: Any, clean: Callable[[str], str]) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
    """Train and test frames of a hub multi-label dataset, and its label names when the data fixes them
    (Reuters: the ModApte topics in both splits; GoEmotions: None, the registry's 28)."""
    parts = {split: dataset[split].to_pandas() for split in ("train", "test")}
    if task_name == "go_emotions":
        feature = getattr(getattr(dataset["train"], "features", {}).get("labels"), "feature", None)
        names = getattr(feature, "names", None) or list(_go_emotions().labels)
        return None, {s: go_emotions_frame(p, names, clean) for s, p in parts.items()}
    labels = reuters_labels(parts["train"], parts["test"])
    return labels, {s: reuters_frame(p, labels, clean) for s, p in parts.items()}
