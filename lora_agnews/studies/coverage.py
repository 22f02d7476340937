"""How often the paired interval of a difference covers the true difference, on simulated studies.

A simulated study is what the seed study is: two settings, each trained with the same seeds, scored on the
same test rows. Whether a run gets a row right follows a probit model whose parts are known:

- a row's difficulty, shared by both settings (what makes pairing rows worthwhile), and a row effect of each
  setting of its own (the rows one setting finds easier than the other);
- a seed effect per run (training randomness that moves a run's accuracy as a whole);
- noise per run and row (the rows a seed happens to get right).

Each setting's expected accuracy over seeds and rows of the same source has a closed form, so the true
difference is known, and the share of simulated studies whose interval holds it is the interval's coverage.
``benchmarks/interval_coverage.py`` prints it for the project's seed counts and test rows; a test checks it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from ..core.paths import Column, Table
from .comparison import CHUNK, CONFIDENCE, paired_difference_ci, seed_row_interval


@dataclass(frozen=True)
class Scenario:
    """A simulated pair of settings; effects on the probit scale (a run is right where the sum exceeds 0)."""

    seeds: int = 3
    rows: int = 800
    seed_effect: float = 0.15  # std of a run's shift: per-seed differences of about 1 point at these values
    level: float = 3.3  # the reference's location: about 90% accuracy
    gap: float = 0.1  # the arm's shift over the reference: about 0.7 points
    difficulty: float = 2.5  # std of a row's difficulty, shared by both settings
    own_rows: float = 0.8  # std of a setting's own row effect
    noise: float = 0.35  # std of the noise per run and row: about 3% of rows change label between seeds

    def true_difference(self) -> float:
        """Expected accuracy of the arm minus the reference's, over seeds, rows and noise."""
        from scipy import stats

        scale = np.sqrt(self.noise ** 2 + self.seed_effect ** 2 + self.difficulty ** 2 + self.own_rows ** 2)
        return float(stats.norm.cdf((self.level + self.gap) / scale) - stats.norm.cdf(self.level / scale))


def simulate(scenario: Scenario, studies: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """0/1 correctness (studies, seeds, rows) of the arm and of the reference, scored on the same rows."""
    s = scenario
    difficulty = s.difficulty * rng.standard_normal((studies, 1, s.rows))

    def setting(level: float) -> np.ndarray:
        own = s.own_rows * rng.standard_normal((studies, 1, s.rows))
        shift = s.seed_effect * rng.standard_normal((studies, s.seeds, 1))
        noise = s.noise * rng.standard_normal((studies, s.seeds, s.rows))
        return (level + difficulty + own + shift + noise) > 0

    return setting(s.level + s.gap), setting(s.level)


def rows_only(arm: np.ndarray, reference: np.ndarray, seed: int, n_boot: int) -> list[float]:
    """The paired bootstrap over rows of the seed-averaged difference, seeds held fixed (the interval before)."""
    return seed_row_interval((arm.astype(np.float32) - reference).mean(axis=0), seed, n_boot)


def seeds_resampled(arm: np.ndarray, reference: np.ndarray, seed: int, n_boot: int) -> list[float]:
    """The plain two-stage percentile bootstrap: seeds resampled with replacement (paired by index), then rows
    (the same rows for every seed). Measured beside :func:`paired_difference_ci` to show why that one draws the
    seed stage from Student's t: with three seeds this one falls short."""
    values = arm.astype(np.float32) - reference
    n_seeds, n_rows = values.shape
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(0, n_boot, CHUNK):
        size = min(CHUNK, n_boot - b)
        picked = rng.integers(0, n_seeds, size=(size, n_seeds))
        rows = rng.integers(0, n_rows, size=(size, n_rows))
        draws[b:b + size] = values[picked[:, :, None], rows[:, None, :]].mean(axis=(1, 2))
    alpha = (1 - CONFIDENCE) / 2
    return [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))]


def seeds_and_rows(arm: np.ndarray, reference: np.ndarray, seed: int, n_boot: int) -> list[float]:
    """The project's interval (:func:`.comparison.paired_difference_ci`)."""
    return paired_difference_ci(arm, reference, seed=seed, n_boot=n_boot)


INTERVALS: dict[str, Callable[[np.ndarray, np.ndarray, int, int], list[float]]] = {
    "seeds and rows": seeds_and_rows, "rows only": rows_only, "seeds resampled": seeds_resampled}


def coverage(scenario: Scenario, studies: int = 400, n_boot: int = 1000, seed: int = 0,
             intervals: tuple[str, ...] = tuple(INTERVALS)) -> dict[str, Any]:
    """Per interval (:data:`INTERVALS`): the share of ``studies`` simulated studies whose interval holds the true
    difference, and the mean width; with the scenario, its true difference and the mean spread of per-seed
    differences (what one study's seeds show)."""
    rng = np.random.default_rng(seed)
    truth = scenario.true_difference()
    arm, reference = simulate(scenario, studies, rng)
    found = {}
    for name in intervals:
        bounds = np.array([INTERVALS[name](arm[k], reference[k], seed + k, n_boot) for k in range(studies)])
        found[name] = {"coverage": float(((bounds[:, 0] <= truth) & (truth <= bounds[:, 1])).mean()),
                       "width": float((bounds[:, 1] - bounds[:, 0]).mean())}
    per_seed = arm.mean(axis=2) - reference.mean(axis=2)
    spread = float(per_seed.std(axis=1, ddof=1).mean()) if scenario.seeds > 1 else 0.0
    return {"scenario": asdict(scenario), "studies": studies, "n_boot": n_boot, "confidence": CONFIDENCE,
            "true_difference": truth, "per_seed_spread": spread, "intervals": found}


# --------------------------------------------------------------------------- the benchmark's grid and its table
SCENARIOS = tuple(Scenario(seeds=seeds, rows=rows, seed_effect=effect)
                  for seeds in (3, 5) for rows in (800, 3800) for effect in (0.0, 0.15))
COVERAGE_FILE = "interval_coverage.json"


def benchmark(studies: int = 400, n_boot: int = 1000, seed: int = 0,
              scenarios: tuple[Scenario, ...] = SCENARIOS) -> dict[str, Any]:
    """:func:`coverage` of every interval in every scenario (what ``benchmarks/interval_coverage.py`` writes)."""
    return {"confidence": CONFIDENCE, "studies": studies, "n_boot": n_boot, "seed": seed,
            "results": [coverage(s, studies, n_boot, seed) for s in scenarios]}


def table(result: dict[str, Any]) -> Table:
    """One row per scenario: seeds, test rows, the spread of its per-seed differences, and each interval's
    coverage with its mean width in points."""
    names = list(INTERVALS)
    columns = [Column("seeds"), Column("test rows"), Column("per-seed differences, std (points)"),
               *[Column(f"{name}: coverage (width)") for name in names]]
    rows = [(str(r["scenario"]["seeds"]), f"{r['scenario']['rows']:,}", f"{100 * r['per_seed_spread']:.2f}",
             *[f"{100 * r['intervals'][n]['coverage']:.1f}% ({100 * r['intervals'][n]['width']:.2f})" for n in names])
            for r in result["results"]]
    return Table.of(columns, rows)


def sentence(result: dict[str, Any]) -> str:
    """What the table measures, with its size, in words."""
    return (f"Share of {result['studies']:,} simulated studies per row whose {int(100 * result['confidence'])}% interval "
            f"holds the true difference, and the mean width of the interval in points ({result['n_boot']:,} bootstrap "
            f"draws each). The spread of per-seed differences is what one simulated study's seeds show on average; "
            f"where the runs have no seed effect, only the rows each seed happens to get right differ.")
