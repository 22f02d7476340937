"""The rules every reading asks: chance, chance-corrected retention, seeds before a verdict, a validation score far from
test, and the trivial baselines beside a multi-label score (tiny made-up data: seconds)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lora_agnews.core import runs
from lora_agnews.core.paths import write_json
from lora_agnews.studies import multilabel_study, yardsticks


def test_chance_is_the_uniform_guess_or_the_majority_class_whichever_is_higher() -> None:
    assert yardsticks.chance_rate(np.arange(100) % 4, 4) == pytest.approx(0.25)
    skewed = np.array([0] * 70 + [1] * 30)
    assert yardsticks.chance_rate(skewed, 2) == pytest.approx(0.70)  # the majority class, not 1/2
    assert yardsticks.chance_rate(np.array([0] * 10 + [1] * 10 + [2] * 20), 5) == pytest.approx(0.5)


def test_a_model_is_at_chance_where_its_interval_reaches_chance() -> None:
    assert yardsticks.reaches_chance(0.49, 0.50) and yardsticks.reaches_chance(0.50, 0.50)
    assert not yardsticks.reaches_chance(0.56, 0.50)


def test_retention_is_the_share_of_the_gain_over_chance_kept() -> None:
    # the cpu Rotten Tomatoes case: 54% merged against 59.5% own on two classes keeps 42% of the gain, not 91%
    assert yardsticks.retention(0.54, 0.595, 0.5) == pytest.approx(0.04 / 0.095)
    assert yardsticks.retention(0.595, 0.595, 0.5) == pytest.approx(1.0)
    assert yardsticks.retention(0.45, 0.595, 0.5) < 0  # below chance: negative, not hidden
    assert math.isnan(yardsticks.retention(0.6, 0.5, 0.5))  # no gain to keep


def test_a_verdict_needs_three_seeds() -> None:
    assert not yardsticks.can_conclude(1) and not yardsticks.can_conclude(2) and yardsticks.can_conclude(3)


def _run(root: Path, name: str, metrics: dict) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    write_json({"status": "complete"}, run_dir / runs.RUN_FILE)
    write_json(metrics, run_dir / runs.METRICS_FILE)


def test_large_gaps_are_found_from_the_records(tmp_path: Path) -> None:
    assert yardsticks.large_gap(0.81, 0.8975) and not yardsticks.large_gap(0.85, 0.87)
    assert not yardsticks.large_gap(None, 0.9) and not yardsticks.large_gap(0.5, 0.58)  # 8 points: not over
    _run(tmp_path, "merging/tasks/agnews", {"best_validation_accuracy": 0.81, "accuracy": 0.8975, "n_validation": 100,
                                            "n_eval": 400})
    _run(tmp_path, "main", {"best_validation_accuracy": 0.86, "accuracy": 0.87})
    _run(tmp_path, "multilabel", {"kind": "multi_label", "best_validation_accuracy": 0.2, "accuracy": 0.9})
    running = tmp_path / "ablation" / "r2"
    running.mkdir(parents=True)
    write_json({"status": "running"}, running / runs.RUN_FILE)  # not complete: its numbers are not read
    found = yardsticks.large_gaps(tmp_path)
    assert [g["run"] for g in found] == ["merging/tasks/agnews"]
    assert found[0]["gap"] == pytest.approx(0.81 - 0.8975) and found[0]["n_validation"] == 100
    assert yardsticks.large_gaps(tmp_path / "absent") == []


def test_multilabel_trivial_baselines_score_what_reading_no_text_scores() -> None:
    names = ["a", "b", "c"]
    train = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])  # priors 4/6, 2/6, 1/6
    test = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    thresholds = {"global": 0.5, "per_label": [0.5, 0.3, 0.5]}  # the run's own cut: a and b pass, c does not
    base = multilabel_study.trivial_baselines(train, test, thresholds, names)
    every = base["every_label"]
    assert every["predicts"] == names
    positives = test.sum()
    assert every["micro_f1"] == pytest.approx(2 * positives / (positives + test.size))  # precision = share, recall 1
    assert every["hamming_loss"] == pytest.approx(1 - positives / test.size)
    assert every["subset_accuracy"] == 0.0
    prior = base["prior"]
    assert prior["predicts"] == ["a", "b"]  # 4/6 >= 0.5, 2/6 >= 0.3, 1/6 < 0.5
    assert prior["subset_accuracy"] == pytest.approx(1 / 4)  # only the row {a, b}
    frequent = base["frequent_set"]
    assert frequent["predicts"] == ["a"] and frequent["subset_accuracy"] == pytest.approx(2 / 4)
    assert all(lo <= frequent["micro_f1"] <= hi for lo, hi in [frequent["intervals"]["micro_f1"]])


def test_multilabel_tables_and_sentence_put_the_baselines_beside_the_scores() -> None:
    names = ["a", "b"]
    train, test = np.array([[1, 0], [1, 1], [0, 1]]), np.array([[1, 0], [0, 1]])
    base = multilabel_study.trivial_baselines(train, test, {"global": 0.5, "per_label": [0.5, 0.5]}, names)
    scores = {k: 0.9 for k, _ in multilabel_study.SCORES}
    result = {"task_name": "t", "baselines": base,
              "metrics": {**scores, "labels": names, "n_eval": 2, "confidence": 0.95,
                          "intervals": {k: [0.8, 1.0] for k, _ in multilabel_study.SCORES},
                          "thresholds": {"global": 0.5, "tuned": [True, True]},
                          "label_cardinality": {"truth": 1.0, "predicted": 1.0}}}
    table = multilabel_study.scores_table(result)
    assert [c.key for c in table.columns][-3:] == [name for _, name in multilabel_study.BASELINES]
    row = table.frame.loc["micro F1"]
    assert row["every label"] == f"{100 * base['every_label']['micro_f1']:.2f}"
    text = multilabel_study.sentence(result)
    assert f"micro F1 {100 * base['every_label']['micro_f1']:.2f}%" in text.split("Trivial baselines")[1]
    assert "Trivial baselines" not in multilabel_study.sentence({**result, "baselines": None})
