"""What makes a finding: balanced subsets recorded in the run, a yardstick on the same rows, intervals
on every ablation variant, and runs shared between the ablation and the seed study."""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lora_agnews.reporting import ablation_reporting, text as reporting
from lora_agnews.studies import baselines, comparison, experiments
from lora_agnews.core import config, paths, runs
from lora_agnews import pipeline
from lora_agnews.core.paths import write_json
from lora_agnews.core.dataset import load_splits, stratified_subsample
from lora_agnews.core.tasks.agnews import load_raw


def labelled(counts: dict[int, int]) -> pd.DataFrame:
    labels = np.concatenate([np.full(n, c) for c, n in counts.items()])
    return pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})


def test_subsets_take_an_equal_share_per_class_and_fill_from_the_others() -> None:
    part = labelled({0: 100, 1: 10, 2: 50, 3: 50})
    even = stratified_subsample(part, 40, seed=1)
    assert even["label"].value_counts().sort_index().tolist() == [10, 10, 10, 10]  # not 100:10:50:50
    short = stratified_subsample(part, 150, seed=1)
    counts = short["label"].value_counts()
    assert len(short) == 150 and counts[1] == 10  # the small class gives all it has
    assert counts.drop(1).max() - counts.drop(1).min() <= 1  # the others share the rest evenly
    assert stratified_subsample(part, 150, seed=1).equals(short)  # fixed by the seed
    assert not stratified_subsample(part, 150, seed=2).equals(short)


def test_balanced_subset_of_a_balanced_source_is_exactly_equal() -> None:
    part = labelled({0: 30, 1: 30, 2: 30, 3: 30})
    assert stratified_subsample(part, 40, seed=0)["label"].value_counts().tolist() == [10, 10, 10, 10]


def test_splits_record_what_was_used_of_what_was_available() -> None:
    cfg = config.load("smoke", {"max_train_samples": 40, "max_val_samples": 8, "max_eval_samples": 20})
    splits = load_splits(cfg)
    train, test = load_raw("sample")
    assert splits.facts() == {"n_train_used": 40, "n_validation": 8, "n_train_available": len(train),
                              "n_test_used": 20, "n_test_available": len(test)}
    assert splits.validation["label"].value_counts().tolist() == [2, 2, 2, 2]


def test_negative_row_counts_are_refused_by_name() -> None:
    with pytest.raises(config.ConfigError, match="max_val_samples"):
        config.load("smoke", {"max_val_samples": -1})


def test_tfidf_reference_compares_on_the_same_rows() -> None:
    cfg = config.load("smoke")
    splits = load_splits(cfg)
    n = len(splits.test)
    labels = splits.test["label"].to_numpy()
    perfect = baselines.tfidf_reference(cfg, np.ones(n, bool), labels, splits)
    assert perfect["n_train"] == len(splits.train) and perfect["n_eval"] == n
    assert 0.25 < perfect["accuracy"] < 1.0  # learns something; the shipped sample is not trivially separable
    assert perfect["difference"]["mean"] == pytest.approx(1.0 - perfect["accuracy"])
    lo, hi = perfect["difference"]["bootstrap_ci"]
    assert 0 < lo <= perfect["difference"]["mean"] <= hi
    assert "a real difference" in reporting.reference_sentence(perfect)
    with pytest.raises(comparison.DifferentRows):
        baselines.tfidf_reference(cfg, np.ones(n - 1, bool), labels[:-1], splits)
    with pytest.raises(comparison.DifferentRows):
        baselines.tfidf_reference(cfg, np.ones(n, bool), labels[::-1], splits)


def _saved_run(root: Path, name: str, correct: np.ndarray, params: int, r: int) -> dict:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    labels = np.zeros(len(correct), dtype=int)
    logits = np.zeros((len(correct), 4), dtype=np.float32)
    logits[np.arange(len(correct)), np.where(correct, 0, 1)] = 1.0
    runs.save_arrays(run_dir / "test_predictions.npz", logits=logits, labels=labels)
    return {"name": name, "lora_r": r, "lora_alpha": 2 * r, "lora_targets": "query,value", "head": "linear",
            "trainable_params": params, "within_budget": True, "status": "complete",
            "accuracy": float(correct.mean()), "macro_f1": float(correct.mean()), "best_validation_accuracy": 0.5,
            "train_seconds": 1.0, "run_dir": str(run_dir)}


def test_ablation_intervals_say_which_variants_really_differ(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    best = rng.random(2000) < 0.90
    close = best.copy()
    close[np.flatnonzero(close)[:30]] = False  # 30 rows lost, 24 won: 0.3 points worse, within the noise
    close[np.flatnonzero(~best)[:24]] = True
    worse = best.copy()
    worse[np.flatnonzero(worse)[:100]] = False  # 5 points worse
    rows = [_saved_run(tmp_path, "a", worse, 1000, 2), _saved_run(tmp_path, "b", close, 2000, 8),
            _saved_run(tmp_path, "c", best, 3000, 16)]
    rows.append({**rows[0], "name": "big", "lora_r": 64, "trainable_params": 2_000_000, "within_budget": False,
                 "status": "over budget", "accuracy": np.nan, "macro_f1": np.nan, "run_dir": str(tmp_path / "none")})
    validation = [0.80, 0.90, 0.85, np.nan]  # the pick is r=8 (validation), not r=16 (the best on test)
    frame = experiments.add_intervals(pd.DataFrame(rows).assign(best_validation_accuracy=validation), seed=0)
    assert frame["reference"].tolist() == [False, True, False, False]
    assert frame.loc[1, "diff_to_reference"] == 0.0 and frame.loc[2, "diff_to_reference"] > 0
    assert frame.loc[0, "diff_ci_high"] < 0 < frame.loc[2, "diff_ci_high"] and frame.loc[2, "diff_ci_low"] < 0
    assert frame.loc[0, "ci_low"] < frame.loc[0, "accuracy"] < frame.loc[0, "ci_high"]
    assert np.isnan(frame.loc[3, "ci_low"])
    frame["pareto"] = experiments.grid_front(frame)
    sentence = ablation_reporting.ablation_sentence(frame)
    # a screen: ranked by validation, one seed's test accuracy, no verdict words whatever the intervals say
    assert sentence.index("1. r=8") < sentence.index("2. r=16") < sentence.index("3. r=2")
    assert "one seed" in sentence
    for word in ("better", "worse", "clearly", "Clearly", "distinguishable"):
        assert word not in sentence
    shown = ablation_reporting.ablation_table(frame).frame
    cells = shown[ablation_reporting.ACCURACY]
    assert re.fullmatch(r"\d+\.\d\d \[\d+\.\d, \d+\.\d\]", cells.iloc[0]) and cells.iloc[-1] == "over budget"
    assert r"one seed [95\% CI]" in ablation_reporting.ablation_table(frame).latex()


def test_a_run_is_trained_once_and_found_wherever_it_is_needed(smoke_config: config.Config) -> None:
    cfg = smoke_config.replace(profile="smoke")
    ablation_dir = paths.runs_dir("smoke") / "ablation" / "r8-x"
    ablation_dir.mkdir(parents=True)
    write_json({"status": "complete", "config": cfg.to_dict(), "run_key": cfg.run_key()}, ablation_dir / runs.RUN_FILE)
    write_json({"accuracy": 0.5, "macro_f1": 0.5}, ablation_dir / runs.METRICS_FILE)
    assert experiments.reusable_run(cfg) == ablation_dir
    assert experiments.reusable_run(cfg.replace(seed=cfg.seed + 1)) is None
    main = paths.runs_dir("smoke") / "main"
    main.mkdir(parents=True)
    write_json({"status": "complete", "config": cfg.to_dict(), "run_key": cfg.run_key()}, main / runs.RUN_FILE)
    write_json({"accuracy": 0.5, "macro_f1": 0.5}, main / runs.METRICS_FILE)
    assert experiments.reusable_run(cfg) == main  # the main run is preferred
    # ... except by a study that holds the run at its own path: it reads its own record whatever ran before
    assert experiments.reusable_run(cfg, own=ablation_dir) == main.parent / "ablation" / "r8-x"
    assert experiments.reusable_run(cfg, own=paths.runs_dir("smoke") / "seeds" / "absent") == main


def test_local_path_overrides_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "csvs").mkdir()
    monkeypatch.chdir(tmp_path)
    out = pipeline.absolute_paths({"data": "csvs", "model_name": "roberta-base", "lora_r": 4, "tokenizer": "local"})
    assert out == {"data": str(tmp_path / "csvs"), "model_name": "roberta-base", "lora_r": 4, "tokenizer": "local"}
