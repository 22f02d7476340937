"""Ablation grid, budget-fitting ranks, Pareto front and the paired comparison (bootstrap, McNemar)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lora_agnews.studies import comparison, experiments
from lora_agnews.core import config
from lora_agnews.core.budget import count_trainable, largest_rank
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


def test_grid_crosses_methods_placements_and_heads() -> None:
    """Each method at its own largest size per placement x head; size-less methods once; whole-encoder
    methods ignore the target sets; combinations PEFT cannot build are left out, not trained."""
    cfg = roberta(ablation_methods="lora,vera,ia3,bitfit,prompt", ablation_ranks="2,max",
                  ablation_targets="query,key,value;all-linear", ablation_heads="linear,lora-dense",
                  lora_r=8, lora_alpha=16)
    grid = experiments.ablation_grid(cfg)
    names = [experiments.run_name(v) for v in grid]
    assert len(names) == len(set(names))
    by_method: dict[str, list] = {}
    for v in grid:
        by_method.setdefault(v.method, []).append(v)
        assert count_trainable(v)["total"] <= v.budget, experiments.run_name(v)
    assert len(by_method["lora"]) == 2 * 2 * 2  # sizes x targets x heads
    assert {v.lora_r for v in by_method["lora"] if v.lora_targets == "all-linear" and v.head == "linear"} == {2, 6}
    assert len(by_method["ia3"]) == 4  # no sizes: one per targets x head
    assert len(by_method["bitfit"]) == 1  # no targets, and no adapter for the lora-dense head (left out)
    assert "bitfit-linear" in names and not any(n.startswith("ia3-r") for n in names)
    assert {v.prompt_tokens for v in by_method["prompt"]} == {2, largest_rank(by_method["prompt"][0])}
    assert {v.head for v in by_method["prompt"]} == {"linear"}  # prompt tuning has no adapter for lora-dense
    assert {v.lora_r for v in by_method["vera"]} == {2, 768}  # VeRA's rank is capped at the hidden size


def test_top_variants_are_chosen_on_validation_not_test() -> None:
    cfg = roberta(head="linear", lora_r=18, lora_alpha=36, ablation_methods="lora,ia3", ablation_ranks="max",
                  ablation_targets="query,key,value;all-linear", ablation_heads="linear", epochs=2.0,
                  ablation_epochs=1.0)
    names = [experiments.run_name(v) for v in experiments.ablation_grid(cfg)]
    assert names == ["r18-query+key+value-linear", "r6-all-linear-linear", "ia3-query+key+value-linear",
                     "ia3-all-linear-linear"]
    frame = pd.DataFrame({"name": names, "status": "complete", "trainable_params": [998_404, 998_404, 60_000, 80_000],
                          "accuracy": [0.99, 0.50, 0.60, 0.95],  # test accuracy must not decide
                          "best_validation_accuracy": [0.99, 0.90, 0.80, 0.70]})
    top = experiments.top_variants(cfg, frame, 2)
    # the chosen configuration (r18 on Q,K,V + linear) is skipped: it is already in the study
    assert [experiments.run_name(v) for v in top] == ["r6-all-linear-linear", "ia3-query+key+value-linear"]
    assert all(v.epochs == cfg.epochs for v in top)  # the seed study's recipe, not the grid's shorter one
    assert experiments.top_variants(cfg, frame, 0) == []


def _arm(name: str, *correct: list[int], labels: tuple[int, ...] = (0, 1, 2, 3)) -> comparison.Arm:
    return comparison.Arm(name, [np.array(c, bool) for c in correct], [np.array(labels)] * len(correct),
                          [42 + k for k in range(len(correct))])


def test_runs_scored_on_different_test_rows_are_not_paired() -> None:
    ref = _arm("ref", [1, 1, 0, 0], [1, 0, 1, 0])
    with pytest.raises(comparison.DifferentRows, match="other seed 43"):
        other = comparison.Arm("other", ref.correct, [np.array([0, 1, 2, 3]), np.array([0, 2, 1, 3])], [42, 43])
        comparison.compare([ref, other], "ref", seed=0)
    with pytest.raises(comparison.DifferentRows):
        comparison.compare([ref, _arm("short", [1, 1, 0], [1, 0, 1], labels=(0, 1, 2))], "ref", seed=0)
    with pytest.raises(comparison.DifferentRows):
        comparison.compare([ref, comparison.Arm("ragged", [np.ones(3, bool)], [np.array([0, 1, 2, 3])])], "ref", seed=0)


def test_compare_pairs_every_arm_with_the_reference_seed_by_seed() -> None:
    ref = _arm("ref", [1, 1, 0, 0], [1, 0, 1, 0])
    better = _arm("better", [1, 1, 1, 0], [1, 1, 1, 1])
    study = comparison.compare([better, ref], "ref", seed=0)
    assert study["n_eval"] == 4 and study["reference"] == "ref" and [a["name"] for a in study["arms"]] == ["better", "ref"]
    b, r = study["arms"]
    assert b["accuracy"] == [0.75, 1.0] and b["mean"] == 0.875 and b["std"] == pytest.approx(np.std([0.75, 1.0], ddof=1))
    assert b["pooled_accuracy"] == 0.875 and b["seeds"] == [42, 43]
    assert b["vs_reference"]["mean"] == pytest.approx(0.875 - 0.5)
    lo, hi = b["vs_reference"]["bootstrap_ci"]
    assert lo <= b["vs_reference"]["mean"] <= hi
    assert [(m["b"], m["c"], m["seed"]) for m in b["vs_reference"]["mcnemar_per_seed"]] == [(1, 0, 42), (2, 0, 43)]
    assert r["vs_reference"]["mean"] == 0.0 and r["vs_reference"]["bootstrap_ci"] == [0.0, 0.0]
    assert r["std"] == 0.0  # both seeds at 0.5
    single = comparison.compare([_arm("a", [1, 0, 0, 0]), _arm("z", [1, 1, 1, 1])], "z", seed=0)["arms"][0]
    assert single["std"] == 0.0 and "seed" in single["vs_reference"]["mcnemar_per_seed"][0]
    unnamed = comparison.Arm("u", [np.ones(4, bool)], [np.arange(4)])
    assert "seed" not in comparison.compare([unnamed], "u", seed=0)["arms"][0]["vs_reference"]["mcnemar_per_seed"][0]


def test_largest_rank_zero_when_head_alone_exceeds_budget() -> None:
    assert largest_rank(roberta(head="default"), budget=500_000) == 0


def test_baseline_config_is_the_starting_point() -> None:
    base = experiments.baseline_config(roberta(head="linear", lora_r=18, lora_alpha=36, lora_variant="dora"))
    assert (base.lora_r, base.lora_alpha, base.lora_targets, base.head, base.lora_variant) == (
        7, 32, "query,key,value", "default", "lora")
    assert count_trainable(base)["total"] == 980_740


def test_pareto_front() -> None:
    params, accuracy = [100, 200, 300, 400, 150, 300, 150], [0.80, 0.79, 0.85, math.nan, 0.81, 0.85, 0.80]
    # dominated: fewer parameters and higher accuracy (200), equal parameters and lower accuracy (150 at 0.80),
    # equal accuracy and more parameters; identical points (300 at 0.85) are both on the front
    assert comparison.pareto_front(params, accuracy) == [True, False, True, False, True, True, False]
    assert comparison.pareto_front([], []) == []


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = (rng.random((3, 200)) < 0.9).astype(int)
    large = (rng.random((3, 5000)) < 0.9).astype(int)
    lo_s, hi_s = comparison.bootstrap_ci(small)
    lo_l, hi_l = comparison.bootstrap_ci(large)
    assert lo_s <= small.mean() <= hi_s and lo_l <= large.mean() <= hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s)
    # binomial standard error at p=0.9, n=15000 pooled over seeds: ~0.0024 -> 95% CI width ~0.0095
    assert 0.005 < hi_l - lo_l < 0.02


def test_mcnemar_matches_known_values() -> None:
    from scipy import stats

    a = np.array([1] * 50 + [0] * 10 + [1] * 30 + [0] * 10, bool)
    b = np.array([1] * 50 + [1] * 10 + [0] * 30 + [0] * 10, bool)
    result = comparison.mcnemar(a, b)
    assert (result["b"], result["c"]) == (30, 10)
    assert result["statistic"] == pytest.approx((abs(30 - 10) - 1) ** 2 / 40)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(361 / 40, 1))
    few = comparison.mcnemar(a[:70], b[:70])  # b=10, c=10 -> exact, p = 1
    assert few["method"] == "exact binomial" and few["p_value"] == pytest.approx(1.0)
    assert comparison.mcnemar(a, a)["p_value"] == 1.0


def test_seeds_and_ablation_on_smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole statistics path on the tiny model: real runs, statistics.json, aggregation."""
    from lora_agnews.core import paths
    from lora_agnews.core.paths import read_json

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
    frame = experiments.run_ablation(cfg)  # the smoke profile's rate search adds LoRA at 0.01 at r=2
    assert frame["status"].tolist() == ["complete", "complete"] and frame["lr_search"].tolist() == [False, True]
    assert frame["pareto"].tolist() == [True, False]  # a rate tried and not used is no setting
    (choice,) = read_json(paths.results_dir("smoke") / experiments.RATES_FILE)
    assert choice["complete"] and [r["rate"] for r in choice["rates"]] == [0.003, 0.01]
    assert choice["used"] == 0.003 and choice["picked"] in (0.003, 0.01)
    assert [r["validation"] for r in choice["rates"]] == frame["best_validation_accuracy"].tolist()


def test_the_seed_study_scores_its_runs_on_its_own_test_rows() -> None:
    """seed_eval_samples: every arm and seed of the study is scored on that subset; the other runs keep theirs."""
    cfg = config.load("smoke", {"max_eval_samples": 40, "seed_eval_samples": 80})
    run = experiments.seed_run_config(cfg, 43)
    assert (run.seed, run.max_eval_samples) == (43, 80) and run.run_key() != cfg.replace(seed=43).run_key()
    assert experiments.seed_run_config(cfg.replace(seed_eval_samples=0), 42).run_key() == cfg.run_key()
    with pytest.raises(config.ConfigError, match="seed_eval_samples"):
        cfg.replace(seed_eval_samples=-1)


@pytest.mark.slow  # a fresh process or several trainings: `make test-slow` (CI runs it)
def test_seed_study_adds_the_best_grid_variant_on_smoke() -> None:
    """study_top: the grid is read, the best variant on validation joins the study, all paired to the baseline."""
    cfg = config.load("smoke", {"epochs": 1, "ablation_epochs": 1, "ablation_ranks": "2", "n_seeds": 2,
                                "ablation_methods": "lora,ia3", "ablation_targets": "query,value",
                                "ablation_heads": "linear", "study_top": 1})
    with pytest.raises(FileNotFoundError, match="ablate"):
        experiments.run_seeds(cfg.replace(profile="nowhere"))
    frame = experiments.run_ablation(cfg)
    assert set(frame["method"]) == {"lora", "ia3"} and frame["status"].eq("complete").all()
    result = experiments.run_seeds(cfg)
    roles = [s["role"] for s in result["settings"]]
    assert roles == ["chosen", "baseline", "grid 1"]
    grid = result["settings"][2]
    best = frame.sort_values("best_validation_accuracy", ascending=False, kind="stable")
    assert grid["name"] == "grid-" + best["name"].iloc[0] or grid["config"]["method"] in {"lora", "ia3"}
    assert len(grid["accuracy"]) == 2 and all(s is not None for s in grid["train_seconds"])
    for entry in result["settings"]:
        lo, hi = entry["vs_baseline"]["bootstrap_ci"]
        assert lo <= entry["vs_baseline"]["mean"] <= hi
        assert [m["seed"] for m in entry["vs_baseline"]["mcnemar_per_seed"]] == [42, 43]
    assert result["settings"][1]["vs_baseline"]["mean"] == 0.0
    assert result["difference"]["mean"] == result["chosen"]["vs_baseline"]["mean"]
