"""The multi-label section of notebook 03: the profile's recipe trained once on a task whose rows are label sets.

The task is ``multilabel_task`` (by default the project's own sample ``data/tasks/topics-multilabel``: four
topics, one to three per text). Its run is the profile's configuration with only ``task`` changed, trained into
``results/<profile>/runs/multilabel`` like every pipeline-owned run: a complete run of the same configuration is
reused, one of another is set aside and retrained, and the audit reloads its adapter in a fresh process. Its test
metrics are :func:`lora_agnews.core.tasks.multilabel_scores.compute_metrics`' (thresholds chosen on validation,
bootstrap intervals over test rows); this module adds what the data looks like (label cardinality, how often labels
occur together), the trivial baselines every score is read beside (every label, the training prior, the most frequent
label set: :func:`trivial_baselines`) and declares the section's tables, sentence and report macros once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..core import paths
from ..core.paths import Column, Table, interval, num, pct, write_json
from ..core.config import Config, ConfigError

STUDY_FILE = "multilabel.json"
SPLITS = ("train", "validation", "test")
# the headline scores, in the order the table, the sentence and the macros give them; the last is lower-is-better
SCORES = (("micro_f1", "micro F1"), ("macro_f1", "macro F1"), ("samples_f1", "samples F1"),
          ("subset_accuracy", "subset accuracy (exact set)"), ("hamming_loss", "Hamming loss"))


def study_config(cfg: Config) -> Config:
    """The profile's recipe with ``task`` set to ``multilabel_task`` (a relative directory resolved as the merging
    study resolves its tasks: under the working directory if it is there, else under the repository) and the batch
    size ``multilabel_batch_size`` when set."""
    from .merging_study import resolve_task

    return cfg.replace(task=resolve_task(cfg.multilabel_task), batch_size=cfg.multilabel_batch_size or cfg.batch_size)


def run_dir(cfg: Config) -> Path:
    """Where the section's run lives: ``results/<profile>/runs/multilabel``."""
    return paths.runs_dir(cfg.profile) / "multilabel"


def load_study_splits(cfg: Config) -> Any:
    """The task's splits as the run sees them; a single-label ``multilabel_task`` is refused by name."""
    from ..core.dataset import load_splits

    splits = load_splits(study_config(cfg))
    if not splits.task.multi_label:
        raise ConfigError(f"parameter 'multilabel_task' names {cfg.multilabel_task!r}, a single-label task; give a "
                          f"label,text directory whose cells join labels with '|' (the default "
                          f"data/tasks/topics-multilabel), go_emotions or reuters21578.")
    return splits


# --------------------------------------------------------------------------- the data
def _indicator(frame: pd.DataFrame, k: int) -> np.ndarray:
    from ..core.tasks.label_sets import multi_hot

    return multi_hot(list(frame["label"]), k).astype(np.int64)


def data_summary(splits: Any) -> dict[str, Any]:
    """Per split: examples, mean labels per example (label cardinality), the share of each set size, each
    label's positives; and the co-occurrence counts of the training rows (train + validation)."""
    from ..core.tasks.multilabel_scores import cooccurrence

    names = list(splits.labels)
    parts = dict(zip(SPLITS, (splits.train, splits.validation, splits.test)))
    per_split = {}
    for split, frame in parts.items():
        x = _indicator(frame, len(names))
        sizes = x.sum(axis=1)
        per_split[split] = {"examples": int(len(x)), "cardinality": float(sizes.mean()) if len(x) else 0.0,
                            "set_sizes": {str(s): int((sizes == s).sum()) for s in range(int(sizes.max(initial=0)) + 1)},
                            "positives": {n: int(x[:, i].sum()) for i, n in enumerate(names)}}
    fit = np.vstack([_indicator(parts["train"], len(names)), _indicator(parts["validation"], len(names))])
    return {"labels": names, "splits": per_split, "cooccurrence_train": cooccurrence(fit)}


def cardinality_table(summary: Mapping[str, Any]) -> Table:
    """One row per split: examples, labels per example, and how many rows hold 0, 1, 2, 3+ labels."""
    rows = []
    for split in SPLITS:  # JSON keeps keys sorted: the splits in reading order
        s = summary["splits"][split]
        sizes = {int(k): v for k, v in s["set_sizes"].items()}
        rows.append({"split": split, "examples": s["examples"], "labels per example": f"{s['cardinality']:.2f}",
                     "0 labels": sizes.get(0, 0), "1 label": sizes.get(1, 0), "2 labels": sizes.get(2, 0),
                     "3+ labels": sum(v for k, v in sizes.items() if k >= 3)})
    columns = [Column("split", tex="Split", align="l"), Column("examples", tex="Examples", fmt=num),
               Column("labels per example", tex="Labels per example"),
               *[Column(k, fmt=num) for k in ("0 labels", "1 label", "2 labels", "3+ labels")]]
    return Table.of(columns, rows, index="split")


def cooccurrence_table(summary: Mapping[str, Any]) -> Table:
    """The training rows' co-occurrence counts: cell (i, j) counts rows holding both labels, the diagonal the
    rows holding the label."""
    names = summary["labels"]
    matrix = summary["cooccurrence_train"]
    rows = [{"label": a, **{b: matrix[i][j] for j, b in enumerate(names)}} for i, a in enumerate(names)]
    return Table.of([Column("label", tex="Label", align="l"), *[Column(n, fmt=num) for n in names]], rows, index="label")


def cooccurrence_sentence(summary: Mapping[str, Any]) -> str:
    """The most frequent pair of labels in the training rows, in generated words."""
    names, matrix = summary["labels"], np.asarray(summary["cooccurrence_train"])
    fit = [summary["splits"][s] for s in ("train", "validation")]
    n = sum(s["examples"] for s in fit)
    card = sum(s["cardinality"] * s["examples"] for s in fit) / max(n, 1)
    upper = np.triu(matrix, k=1)
    i, j = np.unravel_index(int(np.argmax(upper)), upper.shape)
    pair = (f"; the most frequent pair is {names[i]} with {names[j]} ({num(upper[i, j])} rows)" if upper[i, j] > 0
            else "; no two labels ever occur together")
    return f"The {num(n)} training rows hold {card:.2f} labels per example on average{pair}."


# --------------------------------------------------------------------------- the run
def run_study(cfg: Config) -> dict[str, Any]:
    """Train (or reuse) the section's run and write ``results/<profile>/multilabel.json`` (data summary, settings,
    the run's test metrics); returns that record."""
    from ..core.runs import invalidate_results
    from ..core.train import train_owned

    splits = load_study_splits(cfg)
    variant = study_config(cfg)
    invalidate_results(cfg.profile, "the multi-label section")  # it rewrites a result the book and report read
    metrics = train_owned(variant, run_dir(cfg))
    keep = ("kind", "labels", "n_eval", "per_class", "label_cardinality", "empty_truth_share", "empty_prediction_share",
            "cooccurrence", "thresholds", "bce", "at_global_threshold", "at_half", "intervals", "confidence",
            "trainable_params", "train_seconds", "eval_seconds", "global_steps", "best_validation_micro_f1",
            "split_sizes", "device", "precision", *(k for k, _ in SCORES))
    result = {"profile": cfg.profile, "task": variant.task, "task_name": splits.task.name,
              "run_dir": str(run_dir(cfg)), "pretrained": variant.init == "pretrained",
              "settings": {k: getattr(variant, k) for k in ("model_name", "method", "lora_r", "head", "epochs",
                                                            "batch_size", "learning_rate", "max_length",
                                                            "max_train_samples", "seed")},
              "data": data_summary(splits), "metrics": {k: metrics[k] for k in keep if k in metrics},
              "baselines": split_baselines(splits, metrics["thresholds"], variant.seed)}
    write_json(result, paths.results_dir(cfg.profile) / STUDY_FILE)
    return result


# --------------------------------------------------------------------------- the yardsticks
# The trivial predictors every multi-label score is read beside, each scored as the run is (its metrics, its intervals)
BASELINES = (("every_label", "every label"), ("prior", "training prior"), ("frequent_set", "most frequent set"))


def trivial_baselines(train: np.ndarray, test: np.ndarray, thresholds: Mapping[str, Any], names: list[str],
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """What a model that reads no text scores on ``test`` (indicator matrices; ``train``: the rows the run trained on):

    * ``every_label``: every label on every row (recall 1);
    * ``prior``: each label's share of the training rows as its score on every row, cut at the run's own per-label
      thresholds (``thresholds``, chosen on validation), as the run's scores are;
    * ``frequent_set``: the most frequent training label set on every row (ties: the first in sorted order).

    Each is scored by :func:`lora_agnews.core.tasks.multilabel_scores.compute_metrics`, so its numbers and intervals
    are the run's kind; ``predicts`` names the labels it predicts on every row.
    """
    from ..core.tasks.multilabel_scores import compute_metrics

    train, test = np.asarray(train) > 0, np.asarray(test).astype(np.int64)
    n, k = test.shape
    prior = train.mean(axis=0)
    sets, counts = np.unique(train.astype(np.int64), axis=0, return_counts=True)
    frequent = sets[int(np.argmax(counts))]
    cut = np.asarray(thresholds["per_label"], dtype=np.float64)
    cases = {"every_label": (np.ones((n, k)), 0.5, np.ones(k, bool)),
             "prior": (np.tile(prior, (n, 1)), thresholds, prior >= cut),
             "frequent_set": (np.tile(frequent.astype(np.float64), (n, 1)), 0.5, frequent > 0)}
    out = {}
    for key, (probs, cut_at, predicted) in cases.items():
        m = compute_metrics(test, probs, cut_at, names=names, seed=seed)
        out[key] = {**{score: m[score] for score, _ in SCORES}, "intervals": m["intervals"],
                    "predicts": [names[i] for i in np.flatnonzero(predicted)]}
    return out


def split_baselines(splits: Any, thresholds: Mapping[str, Any], seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`trivial_baselines` on the splits a run used: its training rows and its test rows."""
    k = len(splits.labels)
    return trivial_baselines(_indicator(splits.train, k), _indicator(splits.test, k), thresholds, list(splits.labels),
                             seed)


def baselines_sentence(result: Mapping[str, Any]) -> str:
    """The trivial baselines' micro F1 and subset accuracy on the same test rows, in generated words ("" if absent)."""
    base = result.get("baselines")
    if not base:
        return ""
    parts = []
    for key, title in BASELINES:
        b = base[key]
        what = ", ".join(b["predicts"]) or "no label"
        parts.append(f"{title} ({what} on every row): micro F1 {pct(b['micro_f1'])}%, subset accuracy "
                     f"{pct(b['subset_accuracy'])}%")
    return "Trivial baselines on the same test rows, reading no text: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- reading the result
def scores_table(result: Mapping[str, Any]) -> Table:
    """The headline scores with their bootstrap intervals over test rows (F1s and subset accuracy in %,
    Hamming loss as a share of label decisions, in %), and beside each the trivial baselines' (:data:`BASELINES`)."""
    m = result["metrics"]
    ci = f"{round(100 * m['confidence'])}% bootstrap interval"
    base = result.get("baselines") or {}
    rows = [{"metric": title, "test (%)": pct(m[key]), ci: interval(*m["intervals"][key]),
             **{name: pct(base[b][key]) for b, name in BASELINES if b in base}} for key, title in SCORES]
    columns = [Column("metric", tex="Metric", align="l"), Column("test (%)", tex="Test (%)"), Column(ci, align="l"),
               *[Column(name, tex=name.capitalize()) for b, name in BASELINES if b in base]]
    return Table.of(columns, rows, index="metric")


def per_label_table(result: Mapping[str, Any]) -> Table:
    """Each label's precision, recall, F1 (in %), test positives and the threshold chosen for it on validation."""
    m = result["metrics"]
    thresholds = dict(zip(m["labels"], m["thresholds"]["per_label"]))
    own = dict(zip(m["labels"], m["thresholds"].get("tuned", [False] * len(m["labels"]))))
    scores = (("precision", "precision (%)"), ("recall", "recall (%)"), ("f1", "F1 (%)"))
    rows = [{"label": n, **{title: pct(m["per_class"][n][k]) for k, title in scores},
             "test positives": m["per_class"][n]["support"],
             "threshold": f"{thresholds[n]:.2f}" + ("" if own[n] else " (global)")} for n in m["labels"]]
    columns = [Column("label", tex="Label", align="l"), *[Column(title, tex=title.capitalize()) for _, title in scores],
               Column("test positives", tex="Test positives", fmt=num), Column("threshold", tex="Threshold", align="l")]
    return Table.of(columns, rows, index="label")


def sentence(result: Mapping[str, Any]) -> str:
    """What the run scored, in generated words (every number from the result)."""
    m = result["metrics"]
    ci = m["intervals"]
    t = m["thresholds"]
    card = m["label_cardinality"]
    return (f"On the {num(m['n_eval'])} test rows of {result['task_name']} ({len(m['labels'])} labels), the adapter "
            f"scores micro F1 {pct(m['micro_f1'])}% {interval(*ci['micro_f1'])}, macro F1 {pct(m['macro_f1'])}% "
            f"{interval(*ci['macro_f1'])} and subset accuracy {pct(m['subset_accuracy'])}% "
            f"{interval(*ci['subset_accuracy'])} (the whole label set right); Hamming loss {pct(m['hamming_loss'])}% "
            f"of label decisions are wrong. The decision threshold chosen on validation is {t['global']:.2f} "
            f"({sum(t.get('tuned', []))} of {len(m['labels'])} labels with their own); it predicts "
            f"{card['predicted']:.2f} labels per example against {card['truth']:.2f} true ones. "
            + baselines_sentence(result)).strip()


def macros(result: Mapping[str, Any]) -> dict[str, str]:
    """The report's numbers (``\\Multilabel...``)."""
    m = result["metrics"]
    out = {"multilabel_sentence": sentence(result), "multilabel_data_sentence": cooccurrence_sentence(result["data"]),
           "multilabel_task": result["task_name"], "multilabel_test_rows": num(m["n_eval"]),
           "multilabel_labels": str(len(m["labels"])), "multilabel_threshold": f"{m['thresholds']['global']:.2f}",
           "multilabel_cardinality": f"{m['label_cardinality']['truth']:.2f}",
           "multilabel_predicted_cardinality": f"{m['label_cardinality']['predicted']:.2f}"}
    for key, _ in SCORES:
        name = key.replace("_f1", "_f_one")
        out[f"multilabel_{name}"] = pct(m[key])
        out[f"multilabel_{name}_ci"] = interval(*m["intervals"][key])
    return out


def note(result: Mapping[str, Any]) -> str | None:
    """A warning for numbers that measure nothing (a randomly initialised encoder), else None."""
    return None if result.get("pretrained") else ("A randomly initialised encoder: these numbers prove the multi-label "
                                                  "path runs end to end, not what a multi-label adapter learns.")
