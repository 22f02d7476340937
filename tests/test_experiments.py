"""Ablation grid, budget-fitting ranks, Pareto front and the statistics (bootstrap, McNemar)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lora_agnews import config, experiments
from lora_agnews.budget import largest_rank
from lora_agnews.model import count_trainable
from conftest import sample_rows


def roberta(**kw):
    return config.from_dict({"model_name": "roberta-base", "init": "random", **kw})


def test_grid_max_rank_is_the_largest_within_budget() -> None:
    cfg = roberta(ablation_ranks="4,max", ablation_targets="query,value;query,key,value",
                  ablation_heads="default,linear", lora_r=8, lora_alpha=16)
    grid = experiments.ablation_grid(cfg)
    names = [experiments.run_name(v) for v in grid]
    assert len(names) == len(set(names)) == 8
    for v in grid:
        assert count_trainable(v)["total"] <= v.budget
        assert v.lora_alpha == 2 * v.lora_r  # alpha/r kept at the profile's ratio
        assert v.epochs == cfg.ablation_epochs
    maxed = [v for v in grid if v.lora_r != 4]
    assert {(v.lora_targets, v.head, v.lora_r) for v in maxed} == {
        ("query,value", "default", 11), ("query,value", "linear", 27),
        ("query,key,value", "default", 7), ("query,key,value", "linear", 18)}
    for v in maxed:  # one more rank would not fit
        assert count_trainable(v.replace(lora_r=v.lora_r + 1))["total"] > v.budget


def test_largest_rank_zero_when_head_alone_exceeds_budget() -> None:
    assert largest_rank(roberta(head="default"), budget=500_000) == 0


def test_baseline_config_is_the_starting_point() -> None:
    base = experiments.baseline_config(roberta(head="linear", lora_r=18, lora_alpha=36, lora_variant="dora"))
    assert (base.lora_r, base.lora_alpha, base.lora_targets, base.head, base.lora_variant) == (
        7, 32, "query,key,value", "default", "lora")
    assert count_trainable(base)["total"] == 980_740


def test_pareto_front() -> None:
    frame = pd.DataFrame({
        "trainable_params": [100, 200, 300, 400, 150],
        "accuracy": [0.80, 0.79, 0.85, math.nan, 0.81],
        "status": ["complete", "complete", "complete", "over budget", "complete"],
    })
    assert experiments.pareto_front(frame).tolist() == [True, False, True, False, True]


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = (rng.random((3, 200)) < 0.9).astype(int)
    large = (rng.random((3, 5000)) < 0.9).astype(int)
    lo_s, hi_s = experiments.bootstrap_ci(small)
    lo_l, hi_l = experiments.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s)
    # binomial standard error at p=0.9, n=15000 pooled over seeds: ~0.0024 -> 95% CI width ~0.0095
    assert 0.005 < hi_l - lo_l < 0.02


def test_mcnemar_matches_known_values() -> None:
    from scipy import stats

    a = np.array([1] * 50 + [0] * 10 + [1] * 30 + [0] * 10, bool)
    b = np.array([1] * 50 + [1] * 10 + [0] * 30 + [0] * 10, bool)
    result = experiments.mcnemar(a, b)
    assert (result["b"], result["c"]) == (30, 10)
    assert result["statistic"] == pytest.approx((abs(30 - 10) - 1) ** 2 / 40)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(361 / 40, 1))
    few = experiments.mcnemar(a[:70], b[:70])  # b=10, c=10 -> exact, p = 1
    assert few["method"] == "exact binomial" and few["p_value"] == pytest.approx(1.0)
    assert experiments.mcnemar(a, a)["p_value"] == 1.0


def test_seeds_and_ablation_on_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole statistics path on the tiny model: real runs, statistics.json, aggregation."""
    from lora_agnews import paths
    from lora_agnews.artifacts import read_json

    cfg = config.load("smoke", {"epochs": 2, "ablation_epochs": 1, "ablation_ranks": "2",
                                "ablation_targets": "query,value,word_embeddings", "ablation_heads": "linear"})
    result = experiments.run_seeds(cfg)
    stored = read_json(paths.results_dir("smoke") / experiments.STATISTICS_FILE)
    assert stored["chosen"]["seeds"] == [42, 43] and len(stored["baseline"]["accuracy"]) == 2
    for key in ("chosen", "baseline"):
        r = result[key]
        assert r["mean"] == pytest.approx(np.mean(r["accuracy"]))
        lo, hi = r["bootstrap_ci"]
        assert 0.0 <= lo <= r["pooled_accuracy"] <= hi <= 1.0
    assert result["n_eval"] == sample_rows()[1]
    frame = experiments.run_ablation(cfg)
    assert frame["status"].tolist() == ["complete"] and frame["pareto"].tolist() == [True]
    table = experiments.aggregate("smoke")
    assert len(table) == 5 and set(table["status"]) == {"complete"}
    assert table["accuracy"].notna().all()
