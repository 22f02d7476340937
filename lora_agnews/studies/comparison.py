"""Settings compared on the same test rows, and the Pareto front of trainable parameters against accuracy.

A study is a set of arms (settings, each scored by one or more seeds) and a reference arm, all scored on
the same test rows in the same order. On a few hundred or thousand rows two settings a point apart may
not differ at all, so every arm gets its mean ± std over seeds, a bootstrap interval of its accuracy
over test rows, the paired bootstrap interval of its difference to the reference (row i against row i,
which cancels the rows both get right or wrong) and McNemar's test per seed. Pairing rows is only
meaningful when they are the same rows, so arms scored on other rows are refused, not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CONFIDENCE = 0.95
PREDICTIONS_FILE = "test_predictions.npz"


class DifferentRows(ValueError):
    """Arms of one comparison were scored on different test rows (or in another order)."""


@dataclass(frozen=True)
class Arm:
    """One setting: per seed, its 0/1 correctness on the test rows and the labels of the rows it scored.

    ``seeds`` names the seeds in McNemar's per-seed results; empty for a single unnamed run.
    """

    name: str
    correct: Sequence[np.ndarray]
    labels: Sequence[np.ndarray]
    seeds: Sequence[int] = ()


def saved_rows(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A run's per-row correctness and labels, from the test predictions it saved."""
    with np.load(Path(run_dir) / PREDICTIONS_FILE) as pred:
        return pred["logits"].argmax(axis=1) == pred["labels"], pred["labels"]


def run_arm(name: str, run_dirs: Sequence[Path], seeds: Sequence[int] = ()) -> Arm:
    """An arm from the saved test predictions of its runs (one per seed)."""
    rows = [saved_rows(d) for d in run_dirs]
    return Arm(name, [c for c, _ in rows], [y for _, y in rows], seeds)


def check_same_rows(reference: np.ndarray, labels: np.ndarray, what: str) -> None:
    """Refuse ``labels`` that are not ``reference``'s rows in its order: paired statistics compare row i with row i."""
    if labels.shape != reference.shape or not np.array_equal(labels, reference):
        raise DifferentRows(f"{what} was scored on different test rows than the reference ({len(labels)} vs "
                            f"{len(reference)} rows, or another order), so the predictions cannot be paired; "
                            f"rerun it on the same rows.")


def compare(arms: Sequence[Arm], reference: str, seed: int, what: str = "the study") -> dict[str, Any]:
    """Every arm (the reference included) against the ``reference`` arm on the same test rows.

    Per arm: per-seed accuracy, mean and std (ddof 1) over seeds, the bootstrap interval of the
    seed-averaged accuracy, the pooled accuracy, and ``vs_reference``: the mean over rows of the paired
    difference of the seed-averaged rows (the statistic the paired bootstrap resamples, so the estimate
    is the one its interval is about), that interval, and McNemar's test pairing seed k with the
    reference's seed k (``b``: the arm right and the reference wrong). ``seed`` seeds the bootstrap.
    Raises :class:`DifferentRows` when any run of any arm scored other rows than the reference's first.
    """
    by_name = {arm.name: arm for arm in arms}
    rows = by_name[reference].labels[0]
    for arm in arms:
        for k, (correct, labels) in enumerate(zip(arm.correct, arm.labels, strict=True)):
            run = f"{what}: {arm.name}" + (f" seed {arm.seeds[k]}" if arm.seeds else "")
            check_same_rows(rows, labels, run)
            if np.shape(correct) != rows.shape:
                raise DifferentRows(f"{run} has {len(correct)} scored rows for {len(rows)} test rows; "
                                    f"give one correctness value per row.")
    base = np.stack(by_name[reference].correct)
    return {"reference": reference, "n_eval": int(base.shape[1]), "confidence": CONFIDENCE,
            "arms": [_versus(arm, base, seed) for arm in arms]}


def _versus(arm: Arm, base: np.ndarray, seed: int) -> dict[str, Any]:
    """One arm's statistics; ``base`` is the reference's (seeds, rows) correctness, paired seed by seed."""
    matrix = np.stack(arm.correct)
    per_seed = matrix.mean(axis=1)
    named = [{"seed": s} for s in arm.seeds] or [{}] * len(matrix)
    return {"name": arm.name, "seeds": list(arm.seeds), "accuracy": [float(a) for a in per_seed],
            "mean": float(np.mean(per_seed)), "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "bootstrap_ci": bootstrap_ci(matrix, seed=seed), "pooled_accuracy": float(matrix.mean()),
            "vs_reference": {"mean": float((matrix.mean(axis=0) - base.mean(axis=0)).mean()),
                             "bootstrap_ci": paired_difference_ci(matrix, base, seed=seed),
                             "mcnemar_per_seed": [mcnemar(a, b) | n for a, b, n in zip(matrix, base, named)]}}


def bootstrap_ci(correct: np.ndarray, n_boot: int = 2000, confidence: float = CONFIDENCE, seed: int = 0) -> list[float]:
    """Percentile bootstrap CI of mean accuracy over test examples.

    ``correct`` is (n_seeds, n_examples) of 0/1; examples are resampled jointly for all
    seeds, so the interval covers test-set sampling of the seed-averaged accuracy.
    """
    correct = np.atleast_2d(correct).astype(np.float32)
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    per_example = correct.mean(axis=0)
    stats = np.empty(n_boot)
    for b in range(0, n_boot, 200):
        idx = rng.integers(0, n, size=(min(200, n_boot - b), n))
        stats[b:b + len(idx)] = per_example[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2
    return [float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))]


def paired_difference_ci(ca: np.ndarray, cb: np.ndarray, seed: int, n_boot: int = 2000) -> list[float]:
    """Paired bootstrap 95% CI of (a - b) seed-averaged accuracy; ``ca``, ``cb`` are (seeds, examples) of 0/1."""
    per_example = ca.mean(axis=0).astype(np.float32) - cb.mean(axis=0).astype(np.float32)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_example), size=(n_boot, len(per_example)))
    stats = per_example[idx].mean(axis=1)
    return [float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))]


HIGHER, LOWER, NOT_RESOLVED = "higher", "lower", "not resolved"


def direction(low: float, high: float) -> str:
    """What a paired interval of a difference concludes: ``higher`` or ``lower`` only where it excludes zero, the
    one rule every study's sentence applies (ahead / behind / not distinguishable)."""
    if low > 0:
        return HIGHER
    if high < 0:
        return LOWER
    return NOT_RESOLVED


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's test on paired predictions: exact binomial when discordant pairs < 25, else chi2 (corrected)."""
    from scipy import stats

    a, b_ = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    b = int(np.sum(a & ~b_))  # a right, b wrong
    c = int(np.sum(~a & b_))  # a wrong, b right
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "method": "no discordant pairs"}
    if b + c < 25:
        p = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(p), "method": "exact binomial"}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, 1)),
            "method": "chi-square with continuity correction"}


def pareto_front(params: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """True where no other scored point has at most the parameters and at least the accuracy, one strictly.

    A NaN accuracy (not trained) is never on the front and dominates nothing; identical points are both on it.
    """
    x, y = np.asarray(params, dtype=float), np.asarray(accuracy, dtype=float)
    scored = ~np.isnan(y)
    front = []
    for i in range(len(x)):
        dominated = scored & (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        front.append(bool(scored[i] and not dominated.any()))
    return front
