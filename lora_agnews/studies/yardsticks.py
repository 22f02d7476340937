"""What a score must clear before it says anything: chance, the number of seeds, a validation score that agrees.

Every sentence, table and figure that reads a task model, a merge's retention, a verdict or a run's selection asks
these functions, so the rules are stated once:

* **chance**: the accuracy a model reaches without reading the text, the higher of one over the number of classes
  and the share of the most frequent class among the scored rows (:func:`chance_rate`); a model whose test
  interval reaches it (:func:`reaches_chance`) carries no conclusion about its task.
* **retention**: how much of a task model's gain over chance a merge keeps, ``(merged - chance) / (own - chance)``
  (:func:`retention`); a plain ratio of accuracies reads 54% against 59.5% on a binary task as 91% kept.
* **verdicts**: a setting is called ahead or behind another only where it ran with :data:`MIN_SEEDS` seeds on the
  same rows (:func:`can_conclude`); a single-seed grid is a screen, ranked by validation.
* **selection**: a run whose validation and test accuracies differ by more than :data:`GAP_LIMIT` was selected on
  a validation score that does not describe its test rows (:func:`large_gap`, :func:`large_gaps`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core import runs
from ..core.paths import read_json

MIN_SEEDS = 3  # seeds on the same rows before a difference is called ahead or behind
GAP_LIMIT = 0.08  # validation against test accuracy, as a share: beyond it the run is flagged


def chance_rate(labels: Sequence[int] | np.ndarray, n_classes: int) -> float:
    """The accuracy of guessing: the higher of ``1 / n_classes`` and the most frequent class's share of ``labels``
    (the rows scored), so a skewed test split's floor is its majority class, not the uniform guess."""
    y = np.asarray(labels).astype(np.int64).ravel()
    majority = float(np.bincount(y).max() / len(y)) if len(y) else 0.0
    return max(1.0 / n_classes, majority)


def reaches_chance(ci_low: float, chance: float) -> bool:
    """True where an accuracy's interval reaches down to chance: the model cannot be told from guessing."""
    return bool(ci_low <= chance)


def retention(accuracy: float, own: float, chance: float) -> float:
    """The share of the own model's gain over chance that ``accuracy`` keeps: ``(accuracy - chance) / (own -
    chance)``; NaN where the own model does not beat chance (there is no gain to keep)."""
    gain = own - chance
    return (accuracy - chance) / gain if gain > 0 else math.nan


def can_conclude(n_seeds: int) -> bool:
    """Whether a comparison over ``n_seeds`` seeds may be called ahead or behind (else it is a screen)."""
    return n_seeds >= MIN_SEEDS


def large_gap(validation: float | None, test: float | None) -> bool:
    """True where validation and test accuracy differ by more than :data:`GAP_LIMIT` (either missing: False)."""
    if validation is None or test is None or any(math.isnan(float(x)) for x in (validation, test)):
        return False
    return abs(float(validation) - float(test)) > GAP_LIMIT + 1e-12


def large_gaps(runs_root: Path) -> list[dict[str, Any]]:
    """Every complete run under ``runs_root`` whose recorded best validation accuracy and test accuracy differ by
    more than :data:`GAP_LIMIT`: its path under ``runs_root``, both accuracies and the rows behind each."""
    root = Path(runs_root)
    found = []
    for run_dir in runs.complete_runs(root) if root.is_dir() else []:
        metrics_file = Path(run_dir) / runs.METRICS_FILE
        if not metrics_file.is_file():
            continue
        m = read_json(metrics_file)
        validation, test = m.get("best_validation_accuracy"), m.get("accuracy")
        if m.get("kind") == "multi_label" or not large_gap(validation, test):
            continue
        found.append({"run": str(Path(run_dir).relative_to(root)), "validation": float(validation),
                      "test": float(test), "gap": float(validation) - float(test),
                      "n_validation": m.get("n_validation"), "n_test": m.get("n_eval")})
    return sorted(found, key=lambda r: r["run"])
