"""Settings compared on the same test rows, and the Pareto front of trainable parameters against accuracy.

A study is a set of arms (settings, each scored by one or more seeds) and a reference arm, all scored on
the same test rows in the same order. On a few hundred or thousand rows two settings a point apart may
not differ at all, so every arm gets its mean ± std over seeds, an interval of its seed-averaged accuracy,
the paired interval of its difference to the reference (row i against row i, which cancels the rows both
get right or wrong) and McNemar's test for every seed. Pairing rows is only meaningful when they are the
same rows, so arms scored on other rows are refused, not compared.

Both intervals come from :func:`seed_row_interval`, which counts the two things a rerun would change: the
test rows (a bootstrap over rows) and the training seeds (Student's t over the seeds' spread). With one seed
it is the paired bootstrap over rows alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

CONFIDENCE = 0.95
N_BOOT = 2000
CHUNK = 200  # bootstrap draws resampled at once: 200 x rows indices stay small beside the test rows
PREDICTIONS_FILE = "test_predictions.npz"


class DifferentRows(ValueError):
    """Arms of one comparison were scored on different test rows (or in another order)."""


class DifferentSeeds(ValueError):
    """An arm and the reference were trained with different seeds, so their runs cannot be paired seed by seed."""


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

    Per arm: per-seed accuracy, mean and std (ddof 1) over seeds, the interval of the seed-averaged
    accuracy, the pooled accuracy, and ``vs_reference``: the mean over rows of the paired difference of
    the seed-averaged rows (the statistic the interval is about), its interval over seeds and rows
    (:func:`paired_difference_ci`), and McNemar's test for every seed, pairing seed k with the reference's
    seed k (``b``: the arm right and the reference wrong; ``seed`` names the seed where the arm names them).
    ``seed`` seeds the bootstrap. Raises :class:`DifferentRows` when any run of any arm scored other rows
    than the reference's first, :class:`DifferentSeeds` when an arm's seeds are not the reference's.
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
        check_same_seeds(by_name[reference], arm, what)
    base = np.stack(by_name[reference].correct)
    return {"reference": reference, "n_eval": int(base.shape[1]), "confidence": CONFIDENCE,
            "arms": [_versus(arm, base, seed) for arm in arms]}


def check_same_seeds(reference: Arm, arm: Arm, what: str) -> None:
    """Refuse an arm whose runs cannot be paired with the reference's seed by seed (another count, other seeds)."""
    if len(arm.correct) != len(reference.correct) or (arm.seeds and reference.seeds and
                                                      list(arm.seeds) != list(reference.seeds)):
        raise DifferentSeeds(f"{what}: {arm.name} has seeds {list(arm.seeds) or len(arm.correct)}, the reference "
                             f"{reference.name} {list(reference.seeds) or len(reference.correct)}; differences are "
                             f"paired seed by seed, so train every setting with the same seeds.")


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
                             "mcnemar_per_seed": [mcnemar(a, b) | n for a, b, n in zip(matrix, base, named, strict=True)]}}


def seed_row_interval(values: np.ndarray, seed: int, n_boot: int = N_BOOT, confidence: float = CONFIDENCE,
                      bounds: tuple[float, float] = (-np.inf, np.inf)) -> list[float]:
    """Interval of the mean of ``values`` (training seeds x test rows): what a rerun with other seeds, scored on
    other rows from the same source, would find.

    ``values`` is an arm's 0/1 correctness (its accuracy) or an arm's minus the reference's, seed k against the
    reference's seed k (a paired difference). Two stages are added in every draw:

    - rows: the test rows resampled with replacement, the same rows for every seed (and, in a difference, for both
      settings, so what both get right or wrong cancels); this alone is the paired bootstrap over rows, and with
      one seed it is the whole interval;
    - seeds: the seed-level spread, drawn from Student's t with seeds - 1 degrees of freedom scaled by the
      standard error of the per-seed means. Resampling three seeds would understate their spread (its variance
      by (n-1)/n, and three seeds give only ten distinct resamples); the t distribution is the exact small-sample law of a mean of normal seed effects.
      The per-seed means also vary by the rows each seed happens to get right (row-by-seed noise), which the
      rows stage counts already, so that part, estimated from the residuals of the seeds x rows table, is taken
      off the seed-level variance (floored at zero).

    Percentile interval of the draws, kept within ``bounds`` (what the mean can be: an accuracy lies in [0, 1];
    with two seeds t's tails reach beyond); ``benchmarks/interval_coverage.py`` measures its coverage on simulated
    studies (:mod:`.coverage`), beside resampling the rows alone and resampling seeds and rows alike, which both
    fall short of ``confidence`` where seeds differ.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float32))
    n_seeds, n_rows = values.shape
    per_row = values.mean(axis=0)
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(0, n_boot, CHUNK):
        idx = rng.integers(0, n_rows, size=(min(CHUNK, n_boot - b), n_rows))
        draws[b:b + len(idx)] = per_row[idx].mean(axis=1)
    spread = _seed_spread(values)
    if spread > 0:
        from scipy import stats

        # evenly spaced t quantiles in random order: the seed stage without Monte Carlo noise of its own
        quantiles = stats.t.ppf((np.arange(n_boot) + 0.5) / n_boot, n_seeds - 1)
        draws = np.clip(draws + spread * rng.permutation(quantiles), *bounds)
    alpha = (1.0 - confidence) / 2
    return [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))]


def _seed_spread(values: np.ndarray) -> float:
    """The standard error of the seed-averaged mean due to the seeds themselves (0 with one seed).

    The variance of the per-seed means over seeds, divided by their count, less the row-by-seed noise in them
    (the residual mean square of the seeds x rows table over seeds x rows), which the rows stage counts already.
    """
    n_seeds, n_rows = values.shape
    if n_seeds < 2:
        return 0.0
    per_seed, per_row = values.mean(axis=1), values.mean(axis=0)
    between = float(per_seed.var(ddof=1)) / n_seeds
    noise = 0.0
    if n_rows > 1:
        residual = values - per_seed[:, None] - per_row[None, :] + values.mean()
        noise = float((residual.astype(np.float64) ** 2).sum()) / ((n_seeds - 1) * (n_rows - 1)) / (n_seeds * n_rows)
    return float(np.sqrt(max(0.0, between - noise)))


def bootstrap_ci(correct: np.ndarray, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0) -> list[float]:
    """Interval of the seed-averaged accuracy; ``correct`` is (seeds, rows) of 0/1 (:func:`seed_row_interval`)."""
    return seed_row_interval(np.atleast_2d(correct), seed, n_boot, confidence, bounds=(0.0, 1.0))


def paired_difference_ci(ca: np.ndarray, cb: np.ndarray, seed: int, n_boot: int = N_BOOT,
                         confidence: float = CONFIDENCE) -> list[float]:
    """Paired interval of (a - b) seed-averaged accuracy; ``ca``, ``cb`` are (seeds, rows) of 0/1.

    Seeds are paired by index (a's seed k against b's seed k): the studies train every setting with the same
    seed numbers, so a seed's shared effects (data order, the draws both settings make alike) cancel in its
    difference, and the pairing is as valid where they share nothing. Arms with other seed counts are refused.
    """
    ca, cb = np.atleast_2d(ca), np.atleast_2d(cb)
    if ca.shape != cb.shape:
        raise DifferentSeeds(f"{ca.shape[0]} seed(s) of {ca.shape[1]} rows against {cb.shape[0]} of {cb.shape[1]}: "
                             f"a paired difference needs the same seeds on the same rows; train both with the same "
                             f"n_seeds.")
    return seed_row_interval(ca.astype(np.float32) - cb.astype(np.float32), seed, n_boot, confidence, bounds=(-1.0, 1.0))


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


def mcnemar_header(tests: Sequence[dict[str, Any]]) -> str:
    """A column header naming the seeds whose McNemar p-values its cells list (:func:`pvalues_by_seed`)."""
    seeds = [str(t["seed"]) for t in tests if "seed" in t]
    return f"McNemar p (seed {' / '.join(seeds)})" if seeds else "McNemar p"


def pvalues_by_seed(tests: Sequence[dict[str, Any]]) -> str:
    """Every seed's McNemar p in seed order, ``0.940 / 0.049 / 0.934``: one test per seed, none singled out."""
    from ..core.paths import pvalue

    return " / ".join(pvalue(t["p_value"]) for t in tests)


def pvalues_sentence(tests: Sequence[dict[str, Any]]) -> str:
    """Every seed's McNemar test in words: ``p = 0.940 (seed 42), = 0.049 (seed 43)``."""
    from ..core.paths import p_text

    return "p " + ", ".join(p_text(t["p_value"]) + (f" (seed {t['seed']})" if "seed" in t else "") for t in tests)


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
