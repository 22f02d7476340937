"""Per-method learning rates in the grid: parsed and refused, the runs a rate is picked from, the pick itself,
and how those runs stay out of the frontier (Pareto front, best variant, seed study, table, figure). Fast."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lora_agnews.reporting import ablation_reporting, plots
from lora_agnews.core import config, paths
from lora_agnews.studies import experiments
from lora_agnews.core import runs  # noqa: E402
from lora_agnews.core.paths import write_json  # noqa: E402


def roberta(**kw) -> config.Config:
    return config.from_dict({"model_name": "roberta-base", "init": "random", "head": "linear", "lora_r": 8,
                             "lora_alpha": 16, "learning_rate": 0.002, "ablation_ranks": "2,max",
                             "ablation_targets": "query,key,value", "ablation_heads": "linear", **kw})


def test_rates_are_parsed_and_bad_entries_refused_with_an_example() -> None:
    cfg = roberta(method_learning_rates="vera=0.01, prompt=3e-2", lr_candidates="vera=0.05,0.002,0.01;prompt=0.03,0.3")
    assert config.method_rates(cfg) == {"vera": 0.01, "prompt": 0.03}
    assert config.candidate_rates(cfg) == {"vera": [0.002, 0.01, 0.05], "prompt": [0.03, 0.3]}  # sorted
    for bad, match in [({"method_learning_rates": "verra=0.01"}, "not method=rate"),
                       ({"method_learning_rates": "vera=fast"}, "not a positive learning rate"),
                       ({"method_learning_rates": "vera=-1"}, "not a positive learning rate"),
                       ({"lr_candidates": "vera=0.01"}, "at least two"),
                       ({"lr_candidates": "vera"}, "not method=rate")]:
        with pytest.raises(config.ConfigError, match=match):
            roberta(**bad)
    # neither key changes what a run computes: the variant's own learning_rate does
    assert roberta(lr_candidates="vera=0.002,0.01").run_key() == roberta().run_key()


def test_grid_trains_each_method_at_its_rate_and_the_candidates_at_its_smallest_size() -> None:
    cfg = roberta(ablation_methods="lora,vera,prompt", method_learning_rates="vera=0.01",
                  lr_candidates="vera=0.002,0.01,0.05")
    grid = experiments.ablation_grid(cfg)
    names = [experiments.run_name(v) for v in grid]
    assert len(names) == len(set(names))
    vera = {(v.lora_r, v.learning_rate) for v in grid if v.method == "vera"}
    assert vera == {(2, 0.01), (768, 0.01), (2, 0.002), (2, 0.05)}  # every size at the recorded rate
    assert "vera-r768-query+key+value-linear-lr0.01" in names and "vera-r2-query+key+value-linear-lr0.05" in names
    assert {v.learning_rate for v in grid if v.method in ("lora", "prompt")} == {0.002}
    assert not any("lr" in n for n in names if not n.startswith("vera"))  # a rate nobody chose is not in names
    search = [experiments.run_name(v) for v in grid if experiments.is_lr_search(cfg, v)]
    assert sorted(search) == ["vera-r2-query+key+value-linear-lr0.002", "vera-r2-query+key+value-linear-lr0.05"]
    runs_keys = {v.run_key()["learning_rate"] for v in grid if v.method == "vera"}
    assert runs_keys == {0.002, 0.01, 0.05}  # the rate is part of what a run computes


def _fake_run(cfg: config.Config, name: str, validation: float, test: float) -> Path:
    run_dir = paths.runs_dir(cfg.profile) / "ablation" / name
    run_dir.mkdir(parents=True)
    write_json({"status": "complete", "config": cfg.to_dict(), "run_key": cfg.run_key()}, run_dir / runs.RUN_FILE)
    write_json({"accuracy": test, "macro_f1": test, "best_validation_accuracy": validation},
               run_dir / runs.METRICS_FILE)
    return run_dir


def test_the_pick_is_the_best_validation_accuracy_and_a_disagreeing_profile_is_named() -> None:
    cfg = roberta(ablation_methods="vera", ablation_ranks="2", lr_candidates="vera=0.002,0.01,0.05")
    candidates = [v for v in experiments.ablation_grid(cfg)]
    assert sorted(v.learning_rate for v in candidates) == [0.002, 0.01, 0.05]
    (choice,) = experiments.rate_choices(cfg)
    assert choice["picked"] is None and not choice["complete"]
    assert "no run" in ablation_reporting.rate_sentence([choice])
    by_rate = {v.learning_rate: v for v in candidates}
    _fake_run(by_rate[0.002], "a", validation=0.70, test=0.99)  # test accuracy must not decide
    _fake_run(by_rate[0.01], "b", validation=0.85, test=0.80)
    (choice,) = experiments.rate_choices(cfg)
    assert choice["picked"] == 0.01 and not choice["complete"] and "incomplete" in ablation_reporting.rate_sentence([choice])
    _fake_run(by_rate[0.05], "c", validation=0.85, test=0.90)  # a tie goes to the smaller rate
    (choice,) = experiments.rate_choices(cfg)
    assert choice["picked"] == 0.01 and choice["used"] == 0.002 and choice["complete"] and not choice["agrees"]
    sentence = ablation_reporting.rate_sentence([choice])
    assert "ran at 0.002, not at 0.01" in sentence and "0.002 (70.00%)" in sentence
    recorded = roberta(ablation_methods="vera", ablation_ranks="2", lr_candidates="vera=0.002,0.01,0.05",
                       method_learning_rates="vera=0.01")
    (choice,) = experiments.rate_choices(recorded)
    assert choice["agrees"] and "VeRA trains at 0.01, the best validation accuracy of" in ablation_reporting.rate_sentence([choice])
    assert "largest rate tried" not in ablation_reporting.rate_sentence([choice])
    at_edge = dict(choice, picked=0.05, used=0.05)
    assert "largest rate tried" in ablation_reporting.rate_sentence([at_edge])
    rates = ablation_reporting.rates_table([choice])
    assert [r[-1] for r in rates.cells()] == ["", "picked and used", ""]
    assert rates.markdown().count("\n") == 2 + len(rates.rows)
    assert ablation_reporting.rate_sentence([]) == ""


@pytest.fixture
def grid_with_search() -> pd.DataFrame:
    """Three settings and one run that only picked VeRA's rate (the most accurate on test, by chance)."""
    return pd.DataFrame({
        "name": ["r2-qkv", "vera-r2-lr0.01", "vera-r2-lr0.05", "bitfit-linear"],
        "method": ["lora", "vera", "vera", "bitfit"], "lora_variant": "lora", "size_key": ["lora_r", "lora_r", "lora_r", None],
        "lora_r": [2, 2, 2, 8], "prompt_tokens": 20, "lora_targets": "query,key,value", "head": "linear",
        "learning_rate": [0.002, 0.01, 0.05, 0.002], "lr_search": [False, False, True, False],
        "trainable_params": [100_000, 30_000, 30_000, 100_000], "within_budget": True, "status": "complete",
        "accuracy": [0.85, 0.80, 0.95, 0.84], "macro_f1": [0.85, 0.80, 0.95, 0.84],
        "best_validation_accuracy": [0.86, 0.81, 0.70, 0.83], "train_seconds": [200.4, 260.0, 255.0, 150.0],
        "run_dir": ["a", "b", "c", "d"]})


def test_rate_search_runs_join_neither_front_best_table_nor_seed_study(grid_with_search: pd.DataFrame) -> None:
    front = experiments.grid_front(grid_with_search)
    assert list(front) == [True, True, False, False]  # the search run's 95% at 30,000 would dominate if it counted
    table = ablation_reporting.ablation_table(grid_with_search.assign(pareto=front))
    shown = table.frame
    assert len(shown) == 3 and "head" not in shown  # one head: no column for it
    assert list(shown["rate"]) == ["0.002", "0.002", "0.01"]  # the settings' rates differ, so they are shown
    assert list(shown["train s"]) == ["200", "150", "260"]  # ranked by validation: 0.86, 0.83, 0.81
    header = [c.key for c in table.columns]
    assert "train s" in header and "head" not in header and all(len(r) == len(header) for r in table.cells())
    assert "200" in {r[header.index("train s")] for r in table.cells()}
    frame = grid_with_search.assign(ci_low=math.nan, ci_high=math.nan, diff_to_reference=0.0, diff_ci_low=-0.01,
                                    diff_ci_high=0.01, reference=[True, False, False, False])
    assert "0.05" not in ablation_reporting.ablation_sentence(frame) and "VeRA r=2" in ablation_reporting.ablation_sentence(frame)


def test_top_variants_skip_the_rate_search() -> None:
    cfg = roberta(ablation_methods="vera", ablation_ranks="2", lr_candidates="vera=0.002,0.05",
                  method_learning_rates="vera=0.002")
    names = [experiments.run_name(v) for v in experiments.ablation_grid(cfg)]
    assert names == ["vera-r2-query+key+value-linear-lr0.002", "vera-r2-query+key+value-linear-lr0.05"]
    frame = pd.DataFrame({"name": names, "status": "complete", "trainable_params": [30_000, 30_000],
                          "accuracy": [0.8, 0.9], "best_validation_accuracy": [0.5, 0.9], "lr_search": [False, True]})
    assert [experiments.run_name(v) for v in experiments.top_variants(cfg, frame, 2)] == [names[0]]


def test_frontier_figure_adds_training_seconds_and_leaves_out_the_search(grid_with_search: pd.DataFrame,
                                                                         tmp_path: Path) -> None:
    fig = plots.accuracy_vs_params(grid_with_search, budget=1_000_000)
    titles = [ax.get_title() for ax in fig.axes]
    assert any("training time" in t for t in titles)
    seconds = next(ax for ax in fig.axes if "training time" in ax.get_title())
    xs = sorted(x for coll in seconds.collections for x, _ in coll.get_offsets())
    assert xs == [150.0, 200.4, 260.0]  # three settings; the rate-search run is not drawn
    fig.savefig(tmp_path / "frontier.png")
    untimed = plots.accuracy_vs_params(grid_with_search.drop(columns="train_seconds"), budget=1_000_000)
    assert not any("training time" in ax.get_title() for ax in untimed.axes)
    plots.close(fig)
    plots.close(untimed)
