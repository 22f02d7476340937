"""The paired interval over seeds and rows: what it reduces to, and its coverage on simulated studies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lora_agnews.studies import comparison, coverage


def test_with_one_seed_or_seeds_that_agree_it_is_the_paired_bootstrap_over_rows() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.9, rng.random(300) < 0.85
    rows = comparison.seed_row_interval((a.astype(np.float32) - b)[None, :], seed=3)
    assert comparison.paired_difference_ci(a[None, :], b[None, :], seed=3) == rows
    # three seeds that scored every row alike: nothing varies between seeds, so the seeds add nothing
    assert comparison.paired_difference_ci(np.stack([a] * 3), np.stack([b] * 3), seed=3) == rows


def test_seeds_that_disagree_widen_the_interval_beyond_the_rows() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((3, 2000)) < 0.88
    arm = base.copy()
    arm[0, :60] = True  # seed 42 gains up to 3 points, the others nothing: the gap is a seed's luck
    lo, hi = comparison.paired_difference_ci(arm, base, seed=0)
    rows_lo, rows_hi = coverage.rows_only(arm, base, seed=0, n_boot=2000)
    assert lo < rows_lo and hi > rows_hi
    assert lo < 0 < rows_lo  # the rows alone call it resolved; over seeds it is not


def test_two_seeds_far_apart_give_a_wide_interval_within_what_an_accuracy_can_be() -> None:
    rng = np.random.default_rng(2)
    arm = np.stack([rng.random(200) < 0.95, rng.random(200) < 0.70])
    lo, hi = comparison.bootstrap_ci(arm, seed=0)
    assert 0.0 <= lo < 0.75 and 0.9 < hi <= 1.0  # Student's t with 1 degree of freedom: two seeds say little
    lo, hi = comparison.paired_difference_ci(arm, np.stack([rng.random(200) < 0.8] * 2), seed=0)
    assert -1.0 <= lo < 0 < hi <= 1.0


def test_arms_trained_with_other_seeds_are_not_paired() -> None:
    labels = np.arange(4)
    ref = comparison.Arm("ref", [np.ones(4, bool)] * 2, [labels] * 2, [42, 43])
    with pytest.raises(comparison.DifferentSeeds, match="same seeds"):
        comparison.compare([ref, comparison.Arm("one", [np.ones(4, bool)], [labels], [42])], "ref", seed=0)
    with pytest.raises(comparison.DifferentSeeds):
        comparison.compare([ref, comparison.Arm("other", [np.ones(4, bool)] * 2, [labels] * 2, [43, 44])], "ref", seed=0)


def test_coverage_over_seeds_and_rows_is_near_its_level_where_rows_alone_fall_short() -> None:
    """300 simulated studies of 3 seeds on 400 rows, seed effects as large as the archived studies show: the
    interval over seeds and rows holds the true difference about 95% of the time, the rows' interval far less."""
    scenario = coverage.Scenario(seeds=3, rows=400, seed_effect=0.2)
    found = coverage.coverage(scenario, studies=300, n_boot=400, intervals=("seeds and rows", "rows only"))
    assert found["per_seed_spread"] > 0.01  # the seeds really differ: per-seed differences spread over a point
    assert 0.88 <= found["intervals"]["seeds and rows"]["coverage"] <= 0.99
    assert found["intervals"]["rows only"]["coverage"] < 0.86


def test_the_benchmark_prints_and_writes_every_scenario(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "coverage.json"
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "interval_coverage.py"), "--studies", "4",
                           "--n-boot", "40", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [(r["scenario"]["seeds"], r["scenario"]["rows"]) for r in written["results"]] == [
        (s.seeds, s.rows) for s in coverage.SCENARIOS]
    assert all(set(r["intervals"]) == set(coverage.INTERVALS) for r in written["results"])
    assert coverage.table(written).markdown().splitlines()[0] in proc.stdout
